"""The test suite.  A package so that worker processes (process pools, dask)
can import the picklable receivers in ``tests.receivers``."""

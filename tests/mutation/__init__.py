"""Mutation testing: does the suite notice when a promise is broken on purpose?

``python -m tests.mutation`` applies the critical mutants of ``critical.py``
(one per promise of the contract) and requires each to make a test fail.
"""

"""A Django project for sends that wait for the commit (``tests/test_after_commit.py``).

Its cases (``cases.py``) run in a pytest of their own, with pytest-django and
this package's settings: ``concsignals.django.install()`` changes Django for
the whole process, and two real SQLite databases need settings the rest of
the suite does not have.
"""

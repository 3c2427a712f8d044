"""A small Django project served by real servers in test_django_servers.py."""

"""A minimal Django project for the Django integration's tests (``test_integrations_django``).

Its databases and the adapter URL come from environment variables, so a test
can point a ``manage.py`` subprocess at the scratch databases of that test.
"""

"""Gunicorn hooks for tests: span capture is set up in each worker after the fork."""


def post_fork(server: object, worker: object) -> None:
    from tests.servers import spanfile

    spanfile.install()

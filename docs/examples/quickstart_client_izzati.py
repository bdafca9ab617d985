"""Upload a form field and a file with izzati's own client."""

import io
import sys

from izzati import Frontend


def main(url="http://127.0.0.1:5020/"):
    """Send one field and one file; return the server's JSON answer."""
    frontend = Frontend(url)
    file = ("hello.txt", io.BytesIO(b"hello, twistbridge\n"))
    return frontend.send({"name": "Ada"}, file)


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
    # {'status': 'yes', 'text': {'name': 'Ada'},
    #  'files': [{'filename': 'hello.txt', 'size': 19}]}

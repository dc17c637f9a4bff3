"""`pcrtool key`: placeholder until the key-backend work lands."""

from pcrtool.cli.common import new_app

app = new_app("Generate and inspect signing keys.")


@app.command()
def show(path: str) -> None:
    """Show a key's type, size and fingerprint."""

"""``python -m hub.cli``: the ``hub`` command where its script is not installed."""

from hub.cli import main

if __name__ == "__main__":
    main()

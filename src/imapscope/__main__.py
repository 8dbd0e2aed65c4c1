"""Allow ``python -m imapscope``."""

from imapscope.cli import main

main()

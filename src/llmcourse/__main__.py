"""Allow `python -m llmcourse`."""

from llmcourse.cli import main

main()

"""Command-line interface (``nnwatch``); heavy imports happen inside each command."""

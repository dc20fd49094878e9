"""The demo (the README's first command): the whole loop on the embedded default."""

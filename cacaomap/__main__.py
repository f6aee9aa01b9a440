"""``python -m cacaomap``: the same as the ``cacaomap`` command."""

from cacaomap.main import main

main()

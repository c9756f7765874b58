"""Studies of sliceai: experiments, oracles and the bundled checkpoint's recipe.

Imports :mod:`sliceai`; nothing in :mod:`sliceai` imports this package. See README.md.
"""

"""Federated training of the forecast model across sites with Flower (``sliceai federate``).

:mod:`.local` is a site's side (torch only), :mod:`.apps` the Flower ServerApp and
ClientApp (SecAgg+ on by default, optional client-level DP), :mod:`.audit` the check of
what reaches the server, :mod:`.simulate` N sites on one machine, :mod:`.deployment` the
same apps over the network on Flower's deployment engine (``server`` / ``client``) and
:mod:`.deploy` the FAB it runs. Only :mod:`.apps`, :mod:`.audit`, :mod:`.simulate`,
:mod:`.deploy` and :mod:`.command` import flwr (the ``federated`` extra); this package's
``__init__`` and :mod:`.commands` import neither flwr nor torch.
"""

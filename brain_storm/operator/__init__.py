"""The brain_storm operator: runs savers for SaverBinding resources (issue #4).

Layers, from the outside in:

- ``__main__``: the command line, which runs kopf with the handlers;
- ``handlers``: kopf handlers, which decide *when* to reconcile;
- ``reconcile``, ``probes``: *how*, with the API calls of ``kube``;
- ``manifests``, ``endpoints``: pure functions building what is sent.

The operator may import :mod:`brain_storm.urls` and
:func:`brain_storm.databases.known_schemes`; nothing in the saver or the
drivers imports the operator.
"""

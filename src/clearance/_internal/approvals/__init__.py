"""Human approvals: the workflow after an ``approval_required`` decision (docs/design.md §9).

* :mod:`.model` — :class:`~.model.Approval` and :class:`~.model.Vote`, what callers see.
* :mod:`.fold` — an approval's state from its ledger entries, in log order.
* :mod:`.requirement` — quorum, approvers and expiry from the rules that asked for it.
* :mod:`.index` — the in-memory index that lists approvals without scanning the log.
* :mod:`.book` — reading, voting, expiring, collecting and waiting, ledger first.
* :mod:`.grants` — the one grant of an approved request, built from the logged entries.
* :mod:`.webhook` — the signed notice of each new pending approval.
* :mod:`.settings` — the ``approvals:`` mapping of ``clearance.yaml``.

Importing this package loads nothing: ``clearance._internal.home`` reads the settings
module on every start, and only a gate needs the rest.
"""

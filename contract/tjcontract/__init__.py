"""The contract every component of trainingjob-operator shares (standard library only).

What the trainer, core, the operator and the UI must agree on lives here once: the spec's
fields with their bounds and defaults, the status words, the progress format, the
shared-volume layout, atomic writes and the time helper, one module each: :mod:`.spec`
(the fields), :mod:`.names` (API names, Kubernetes name rules, timeframes, models, how a
field is spelled in Python and as a flag), :mod:`.words` (run states and phases),
:mod:`.layout` (the shared volume and the run folder), :mod:`.files` (atomic writes),
:mod:`.times` (the timestamp format) and :mod:`.checks` (typed input). The dependency direction is
contract ← trainer ← core ← operator / UI ← ``tjctl``; nothing here imports any of them
or anything outside the standard library (``tests/test_import_direction.py``).
"""

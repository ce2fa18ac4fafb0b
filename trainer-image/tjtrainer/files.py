"""Transitional: the atomic writes moved to :mod:`tjcontract.files` (issue 14 item 1).

Re-exported only for the trainer modules that other helpers were editing at the time of
the move (progress, models, train); remove this module once they import tjcontract.files.
"""

from __future__ import annotations

from tjcontract.files import STALE_TEMPORARY_S as STALE_TEMPORARY_S
from tjcontract.files import atomic_write_bytes as atomic_write_bytes
from tjcontract.files import fault_point as fault_point
from tjcontract.files import remove_stale_temporaries as remove_stale_temporaries
from tjcontract.files import sha256_file as sha256_file

"""The Streamlit UI of trainingjob-operator: start, watch, compare and cancel training
jobs through the ``training_jobs`` table (``tjctl ui``).

Layers import one way: :mod:`tjui.app` (the page) uses :mod:`tjui.views` and
:mod:`tjui.forms`, which use :mod:`tjui.db` (connections), :mod:`tjui.data` (rows to
DataFrames), :mod:`tjui.charts`, :mod:`tjui.artifacts` and :mod:`tjui.formatting`.
"""

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")
"""The Streamlit script that ``streamlit run`` serves."""

__all__ = ["APP_PATH"]

"""The seed's pickles (``scaler.pkl``, ``model_<side>.pkl``) are written without importing
scikit-learn, and load as the scikit-learn objects the seed wrote."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.preprocessing import StandardScaler

from tjtrainer.legacy import regressor_pickle, scaler_pickle
from tjtrainer.matrices import Standardiser


def _rows() -> np.ndarray:
    rows = np.random.default_rng(5).normal(3.0, 2.0, size=(500, 4))
    rows[:, 2] = 7.25  # a constant feature: scaled by 1, as scikit-learn does
    return rows


def _booster(rows: np.ndarray) -> xgb.Booster:
    data = xgb.DMatrix(rows, label=rows[:, 0] * 0.5 + rows[:, 1])
    return xgb.train({"max_depth": 3, "nthread": 1, "seed": 1}, data, num_boost_round=8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [500, 3 * 4096 + 17], ids=["one-block", "blocks"])
def test_the_standardiser_scales_exactly_as_scikit_learn_does(dtype: type, count: int) -> None:
    """Bit for bit: a reader scaling with scaler.pkl feeds the models what they saw (the
    rows are centred a block at a time: several blocks give the same sums as one)."""
    rows = np.resize(_rows(), (count, 4)) * np.linspace(1.0, 1.5, count)[:, None]
    rows[:, 2] = 7.25
    rows = rows.astype(dtype)
    ours, theirs = Standardiser.fit(rows), StandardScaler().fit(rows)
    np.testing.assert_array_equal(ours.mean_, theirs.mean_)
    np.testing.assert_array_equal(ours.var_, theirs.var_)
    np.testing.assert_array_equal(ours.scale_, theirs.scale_)
    assert ours.scale_[2] == 1.0
    scaled = ours.transform(rows)
    assert scaled.dtype == dtype
    np.testing.assert_array_equal(scaled, theirs.transform(rows))


def test_scaler_pickle_loads_as_a_fitted_standard_scaler() -> None:
    rows = _rows()
    ours = Standardiser.fit(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no version warning from scikit-learn
        loaded = pickle.loads(scaler_pickle(ours))
    assert type(loaded) is StandardScaler
    reference = StandardScaler().fit(rows)
    assert sorted(loaded.__getstate__()) == sorted(reference.__getstate__())
    assert loaded.n_samples_seen_ == 500 and loaded.n_features_in_ == 4
    np.testing.assert_allclose(loaded.transform(rows), reference.transform(rows), atol=1e-12)


def test_regressor_pickle_is_the_seeds_xgbregressor() -> None:
    rows = _rows()
    raw = bytes(_booster(rows).save_raw(raw_format="ubj"))
    loaded = pickle.loads(regressor_pickle(raw))
    seeds = xgb.XGBRegressor()
    seeds.load_model(bytearray(raw))
    assert type(loaded) is xgb.XGBRegressor
    ours_state = {k: v for k, v in vars(loaded).items() if k != "_Booster"}
    seeds_state = {k: v for k, v in vars(seeds).items() if k != "_Booster"}
    assert repr(ours_state) == repr(seeds_state)  # nan == nan only as text
    np.testing.assert_array_equal(loaded.predict(rows), seeds.predict(rows))


def test_a_process_without_scikit_learn_writes_pickles_that_load_with_it(tmp_path: Path) -> None:
    """As in ``python -m tjtrainer``: XGBoost imported with scikit-learn hidden; the
    trainer's modules then never import it, and the pickles load where it is installed."""
    rows = _rows()
    np.save(tmp_path / "rows.npy", rows)
    _booster(rows).save_model(tmp_path / "model.ubj")
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from tjtrainer.legacy import import_xgboost_without_sklearn
        import_xgboost_without_sklearn()
        import numpy as np
        import tjtrainer.train
        from tjtrainer.legacy import regressor_pickle, scaler_pickle
        from tjtrainer.matrices import Standardiser
        folder = Path({str(tmp_path)!r})
        rows = np.load(folder / "rows.npy")
        (folder / "scaler.pkl").write_bytes(scaler_pickle(Standardiser.fit(rows)))
        raw = (folder / "model.ubj").read_bytes()
        (folder / "model.pkl").write_bytes(regressor_pickle(raw))
        print(sorted(m for m in sys.modules if m.split(".")[0] == "sklearn"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
    scaler = pickle.loads((tmp_path / "scaler.pkl").read_bytes())
    np.testing.assert_allclose(
        scaler.transform(rows), StandardScaler().fit(rows).transform(rows), atol=1e-12
    )
    regressor = pickle.loads((tmp_path / "model.pkl").read_bytes())
    booster = xgb.Booster(model_file=str(tmp_path / "model.ubj"))
    np.testing.assert_array_equal(regressor.predict(rows), booster.inplace_predict(rows))

"""A versioned Gaussian-mixture anomaly model that learns incrementally, stored without pickle.

Training (`train_model`):
- Warm start: when a previous version exists and the new window still looks like the data it
  was trained on, EM starts from the previous weights, means and covariances (and keeps its
  scaler, so the parameter space is the same), so the model moves a little each day.
- Drift: when the new window's median anomaly score under the previous model (robust z
  units) exceeds ``drift_threshold``, the typical new point is unlike anything the model knew:
  a full retrain refits the scaler and picks the number of components by BIC within
  [min_components, max_components].
- Loss (documented, and what the learning status reads): the relative change in mean
  negative log-likelihood, on this training window, between the previous version and the new
  one: ``|nll_prev - nll_new| / max(1, |nll_new|)``. It is 1.0 for a first version. A model
  that no longer moves when shown a new day has converged: loss < 0.02 "converged",
  < 0.05 "converging", else "training" (the seed's thresholds).

Scoring: a sample's negative log-likelihood, standardised by the median and MAD of the
training samples' NLL, so the score reads like a z-score (higher = more anomalous).

Persistence: parameters as JSON (plain lists of floats); the version is the SHA-256 of that
canonical JSON, so equal parameters give the same version and any edit is detected on load.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

from .atomic import atomic_write_text

FORMAT_VERSION = 1
REG_COVAR = 1e-3
RANDOM_STATE = 0
LOSS_CONVERGED = 0.02
LOSS_CONVERGING = 0.05


class InsufficientSamplesError(ValueError):
    pass


class ModelFileError(ValueError):
    """A stored model version is missing, corrupt or was edited by hand."""


@dataclass(frozen=True)
class GMMSettings:
    n_components: int = 3
    min_components: int = 1
    max_components: int = 6
    min_samples: int = 48
    max_iter: int = 200
    drift_threshold: float = 6.0


@dataclass
class TrainingReport:
    mode: str  # "initial", "warm_start" or "full_retrain_drift"
    samples: int
    loss: float
    converged: bool
    n_iter: int
    n_components: int
    bic: float
    mean_nll: float
    drift_score: float | None
    learning_status: str
    flag_rate: float
    score_p50: float
    score_p95: float
    score_p99: float


@dataclass
class AnomalyModel:
    feature_names: list[str]
    log_features: list[str]
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    nll_median: float
    nll_mad: float
    train_mean_nll: float
    info: dict[str, Any] = field(default_factory=dict)

    # ---- scoring ----------------------------------------------------------------------
    def _mixture(self) -> GaussianMixture:
        from sklearn.mixture import GaussianMixture  # imported here: see _fit

        gm = GaussianMixture(n_components=len(self.weights), covariance_type="full", reg_covar=REG_COVAR)
        gm.weights_ = self.weights
        gm.means_ = self.means
        gm.covariances_ = self.covariances
        chol = np.linalg.cholesky(self.covariances)
        # sklearn stores the Cholesky factor of the precision matrices.
        gm.precisions_cholesky_ = np.array([np.linalg.inv(c).T for c in chol])
        gm.precisions_ = np.array([p @ p.T for p in gm.precisions_cholesky_])
        gm.converged_ = True
        gm.n_iter_ = 0
        gm.n_features_in_ = self.means.shape[1]
        return gm

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (_log_columns(np.asarray(X, dtype=float), self.feature_names, self.log_features) - self.scaler_mean) / self.scaler_scale

    def negative_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        out = np.full(len(X), np.nan)
        ok = np.isfinite(X).all(axis=1)
        if ok.any():
            out[ok] = -self._mixture().score_samples(self.transform(X[ok]))
        return out

    def anomaly_score(self, X: np.ndarray) -> np.ndarray:
        """z-like score: (NLL - training median) / (1.4826 * training MAD); NaN where input is not finite."""
        return (self.negative_log_likelihood(X) - self.nll_median) / (1.4826 * self.nll_mad)

    # ---- persistence ------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "log_features": list(self.log_features),
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_scale": self.scaler_scale.tolist(),
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
            "nll_median": self.nll_median,
            "nll_mad": self.nll_mad,
            "train_mean_nll": self.train_mean_nll,
        }

    @property
    def version(self) -> str:
        return params_hash(self.params())

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "params": self.params(), "info": self.info}, indent=1, sort_keys=True, allow_nan=False)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / f"{self.version}.json"
        if not path.exists():
            atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, text: str, source: str = "model file") -> "AnomalyModel":
        try:
            doc = json.loads(text)
            params = doc["params"]
            if params.get("format") != FORMAT_VERSION:
                raise ModelFileError(f"{source}: unsupported model format {params.get('format')!r}.")
            expected = params_hash(params)
            if doc.get("version") != expected:
                raise ModelFileError(
                    f"{source}: content hash {expected[:12]} does not match its version {str(doc.get('version'))[:12]}; "
                    "the file was edited or corrupted. Delete it and re-materialize anomaly_model for that day."
                )
            model = cls(
                feature_names=list(params["feature_names"]),
                log_features=list(params["log_features"]),
                scaler_mean=np.array(params["scaler_mean"], dtype=float),
                scaler_scale=np.array(params["scaler_scale"], dtype=float),
                weights=np.array(params["weights"], dtype=float),
                means=np.array(params["means"], dtype=float),
                covariances=np.array(params["covariances"], dtype=float),
                nll_median=float(params["nll_median"]),
                nll_mad=float(params["nll_mad"]),
                train_mean_nll=float(params["train_mean_nll"]),
                info=dict(doc.get("info") or {}),
            )
            k, d = model.means.shape
            if model.weights.shape != (k,) or model.covariances.shape != (k, d, d) or len(model.feature_names) != d:
                raise ModelFileError(f"{source}: parameter shapes are inconsistent.")
            np.linalg.cholesky(model.covariances)
            return model
        except ModelFileError:
            raise
        except (ValueError, KeyError, TypeError, np.linalg.LinAlgError) as exc:
            raise ModelFileError(
                f"{source} is not a valid NeuroPilot model ({type(exc).__name__}: {exc}). "
                "Delete it and re-materialize anomaly_model for that day."
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> "AnomalyModel":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ModelFileError(f"Model file {path} does not exist. Re-materialize anomaly_model for that day.") from exc
        return cls.from_json(text, source=str(path))


def params_hash(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def learning_status(loss: float) -> str:
    if loss < LOSS_CONVERGED:
        return "converged"
    if loss < LOSS_CONVERGING:
        return "converging"
    return "training"


def _log_columns(X: np.ndarray, names: Sequence[str], log_features: Sequence[str]) -> np.ndarray:
    X = X.copy()
    for i, name in enumerate(names):
        if name in log_features:
            X[:, i] = np.log1p(np.clip(X[:, i], 0, None))
    return X


def _robust_stats(nll: np.ndarray) -> tuple[float, float]:
    median = float(np.median(nll))
    mad = float(np.median(np.abs(nll - median)))
    return median, max(mad, 1e-6)


def _fit(Xs: np.ndarray, k: int, max_iter: int, init: AnomalyModel | None = None) -> GaussianMixture:
    # scikit-learn is imported where a mixture is built, not with this module: importing it
    # (~1.7 s) was the largest part of loading the code location, which every run process pays,
    # and most runs (report, alerts, deliveries, overrides) never build one.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    kwargs: dict[str, Any] = {}
    if init is not None:
        kwargs = dict(
            weights_init=init.weights / init.weights.sum(),
            means_init=init.means,
            precisions_init=np.linalg.inv(init.covariances + REG_COVAR * np.eye(init.means.shape[1])),
        )
    gm = GaussianMixture(
        n_components=k, covariance_type="full", reg_covar=REG_COVAR, max_iter=max_iter,
        random_state=RANDOM_STATE, n_init=1, **kwargs,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(Xs)
    return gm


def train_model(
    X: np.ndarray,
    feature_names: Sequence[str],
    settings: GMMSettings = GMMSettings(),
    previous: AnomalyModel | None = None,
    log_features: Sequence[str] = (),
    info: dict[str, Any] | None = None,
) -> tuple[AnomalyModel, TrainingReport]:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(f"training matrix must be (samples, {len(feature_names)}), got {X.shape}")
    X = X[np.isfinite(X).all(axis=1)]
    n = len(X)
    if n < settings.min_samples:
        raise InsufficientSamplesError(
            f"insufficient samples to train the anomaly model: {n} usable rows, need at least "
            f"{settings.min_samples}. Materialize more raw_metrics/metric_features partitions for the "
            f"training window, raise model.lookback_hours, or lower model.min_samples."
        )
    names = list(feature_names)
    logs = [f for f in log_features if f in names]
    XL = _log_columns(X, names, logs)

    drift_score = None
    mode = "initial"
    compatible = previous is not None and previous.feature_names == names and previous.log_features == logs
    if compatible:
        # How far the new window's typical point sits from what the previous version was
        # trained on, in the model's own robust z units.
        drift_score = float(np.median(previous.anomaly_score(X)))
        mode = "full_retrain_drift" if drift_score > settings.drift_threshold else "warm_start"

    if mode == "warm_start":
        mean, scale = previous.scaler_mean, previous.scaler_scale
        Xs = (XL - mean) / scale
        gm = _fit(Xs, previous.n_components, settings.max_iter, init=previous)
    else:
        mean = XL.mean(axis=0)
        scale = XL.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        Xs = (XL - mean) / scale
        best = None
        hi = max(settings.min_components, min(settings.max_components, n // 10))
        for k in range(settings.min_components, hi + 1):
            cand = _fit(Xs, k, settings.max_iter)
            bic = cand.bic(Xs)
            if best is None or bic < best[0]:
                best = (bic, cand)
        gm = best[1]

    nll_train = -gm.score_samples(Xs)
    median, mad = _robust_stats(nll_train)
    model = AnomalyModel(
        feature_names=names, log_features=logs, scaler_mean=np.asarray(mean, float), scaler_scale=np.asarray(scale, float),
        weights=gm.weights_, means=gm.means_, covariances=gm.covariances_,
        nll_median=median, nll_mad=mad, train_mean_nll=float(nll_train.mean()), info=dict(info or {}),
    )
    new_nll = float(nll_train.mean())
    if compatible:
        loss = abs(float(np.mean(previous.negative_log_likelihood(X))) - new_nll) / max(1.0, abs(new_nll))
    else:
        loss = 1.0
    scores = (nll_train - median) / (1.4826 * mad)
    report = TrainingReport(
        mode=mode, samples=n, loss=float(loss), converged=bool(gm.converged_), n_iter=int(gm.n_iter_),
        n_components=int(gm.n_components), bic=float(gm.bic(Xs)), mean_nll=new_nll,
        drift_score=None if drift_score is None else float(drift_score), learning_status=learning_status(loss),
        flag_rate=float(np.mean(scores > 5.0)), score_p50=float(np.percentile(scores, 50)),
        score_p95=float(np.percentile(scores, 95)), score_p99=float(np.percentile(scores, 99)),
    )
    model.info.update({"training": asdict(report)})
    return model, report


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _train_one(args: tuple) -> tuple[Any, Any]:
    key, X, feature_names, settings, previous, log_features, info = args
    try:
        return key, train_model(X, feature_names, settings, previous=previous, log_features=log_features, info=info)
    except InsufficientSamplesError as exc:
        return key, exc


def sklearn_on_one_thread():
    """Context: scikit-learn loaded, and it and every BLAS/OpenMP library on one thread (see
    parallel.one_native_thread). scikit-learn is imported first because it brings its own OpenBLAS
    and OpenMP, and threadpoolctl limits only the libraries already loaded."""
    from .parallel import one_native_thread

    _load_sklearn()
    return one_native_thread()


def _load_sklearn() -> None:
    import sklearn.mixture  # noqa: F401


def train_many(jobs: Sequence[tuple[str, np.ndarray, AnomalyModel | None, dict[str, Any]]],
               feature_names: Sequence[str], settings: GMMSettings = GMMSettings(),
               log_features: Sequence[str] = (), workers: int | None = None
               ) -> dict[str, tuple[AnomalyModel, TrainingReport] | InsufficientSamplesError]:
    """train_model for many (key, X, previous, info) at once, on up to `workers` processes (default:
    the machine's cores when enough models need a full search to pay for starting them, else
    this process). Each fit is seeded, so the models (and their content-hash versions) are
    the same however many processes train them."""
    from .parallel import map_processes

    _load_sklearn()  # before map_processes limits the threads (see sklearn_on_one_thread)

    args = [(key, X, list(feature_names), settings, previous, list(log_features), info)
            for key, X, previous, info in jobs]
    if workers is None:
        # A worker process costs ~2 s to start (a fresh interpreter importing numpy, pandas and
        # scikit-learn). A full search of up to max_components mixtures costs ~0.5 s a service, a
        # warm start ~25 ms: a day of warm starts for 100 services took 5.4 s on two fresh workers
        # and 3.4 s in the run's own process. Models without a previous version (a first day, new
        # services) are the full searches known in advance; those that drift into a full retrain
        # run where they are. Two workers pay off once the known searches outweigh two starts.
        full_searches = sum(previous is None for _, _, previous, _ in jobs)
        workers = None if full_searches * FULL_SEARCH_S >= 2 * WORKER_START_S else 1
    return dict(map_processes(_train_one, args, workers))


WORKER_START_S = 2.0
FULL_SEARCH_S = 0.5

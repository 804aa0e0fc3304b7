"""AttributionCallback: explains a fixed probe set every N epochs and logs it for TensorBoard."""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Union

import keras
import numpy as np

from tb_xai import metadata, methods as methods_lib, quality as quality_lib, schedule as schedule_lib, summary
from tb_xai import text as text_lib
from tb_xai.backend import adapt
from tb_xai.methods.base import AttributionMethod, check_positive_int
from tb_xai.probe import ProbeLike, as_probe_set
from tb_xai.saturation import vanishing_reason, vanishing_rows
from tb_xai.targets import TargetLike, check_target, parse_target, resolve_targets

logger = logging.getLogger(__name__)

#: The scalar each logged step writes: the callback's CPU time in the fit so far over the training epochs'.
OVERHEAD_TAG = quality_lib.OVERHEAD_TAG
#: The default `max_overhead`: the callback's logged steps cost at most 5% of the training epochs' CPU time.
DEFAULT_MAX_OVERHEAD = 0.05
#: Without `max_overhead`, the callback warns once when its logged steps' share is over this after 3 of them.
OVERHEAD_WARNING = 0.1

MethodLike = Union[str, AttributionMethod]


class AttributionCallback(keras.callbacks.Callback):
    """Logs attributions of a fixed probe set as TensorBoard summaries while a model trains.

    Configuration mistakes fail before training starts (or, for a model that is only built by its first
    training batch, right after that batch). A method that fails at run time, or returns NaN/inf, is logged
    as a failure for that step with a warning, and training goes on.

    Args:
        log_dir: the directory given to `keras.callbacks.TensorBoard` too; summaries go to its `subdir`.
        probe: the inputs explained at every logged step: an array (probes, *features), or a list/dict of
            arrays for multi-input models (the structure the model is called with).
        labels: optional labels of the probes (class indices, one-hot rows or regression targets).
        methods: method names from `tb_xai.methods.REGISTRY` or configured method objects.
        feature_names: names of the features of a tabular probe.
        class_names: names of the explained output's classes.
        target: "predicted", "label", a class index, or (output name or index, one of those). With "label",
            a single sigmoid unit is explained as two classes: a probe labelled 1 explains p, one labelled 0
            explains 1 - p (with `logits=True`: z and -z), and predictions are logged as [1 - p, p].
        logits: explain the explained output before its final softmax or sigmoid (the activation of the
            layer that produces it, or a final `Activation`/`Softmax` layer), which a saturated softmax does
            not flatten to zero gradients. A model whose output layer has no such activation is refused.
        every_n_epochs: log at epochs 0, N, 2N, ... and at the last epoch.
        max_overhead: the most CPU time the callback's logged steps may add to training, as a fraction of the
            training epochs' (0.05, the default: 5%), or None to log every scheduled epoch. Under the budget,
            logged epochs are multiples of a stride, `every_n_epochs` times the smallest power of two at which
            a step (priced at the last one's CPU time) costs at most that share of the epochs it spans, and a
            scheduled epoch is logged only while the fit's budget still pays for it and for its last epoch's
            step (`tb_xai.schedule`). Runs of one configuration log the same epochs, and a costlier run a
            subset of a cheaper one's. The first and the last epoch of each fit are always logged; the setup
            and the first logged step (which traces the methods) are not charged, since nothing would save
            them. The budget is in each method's logged config, and the epochs skipped before each logged step
            in the scalar `xai/skipped_epochs`. Budget or not, each logged step writes the scalar
            `xai/overhead`: the callback's CPU time in this fit so far (setup and logged steps, that one
            included) over the training epochs'; with None, the callback warns once when, after 3 logged
            steps, the steps alone have cost more than `OVERHEAD_WARNING` (0.1) of the epochs.
        batch_size: the most rows the gradient methods and occlusion put through the model at once (bounds
            memory). kernel_shap and lime call the model with about 8 MB of input at a time, at least
            `batch_size` rows, unless given a `batch_size` of their own.
        subdir: the run directory under `log_dir` the summaries are written to.
        quality: the quality figures computed at each logged step (`tb_xai.quality`): by default (or True)
            drift, seeds and sanity, whose cost is small and bounded; "all" adds faithfulness, which costs
            several times a gradient method's attribution time; False for none; or a list of "drift",
            "faithfulness", "seeds", "sanity", or a `tb_xai.quality.Quality` with budgets.
        vocabulary: the token strings of text inputs (index = token id): a list, or an object with
            `get_vocabulary()` (a `TextVectorization` layer, a keras_hub tokenizer); a dict by input name when
            text inputs differ. Without it tokens are written as ``#<id>``.
        embedding_layer: the Embedding layer (name, path "outer/inner" or object) whose output the gradient
            methods attribute a text input at; by default the Embedding the token input feeds. A text input is
            an integer (probes, positions) input that feeds an Embedding layer (see `tb_xai.text`).
        padding_id: the token id of padding positions (0; None: no id is padding). A `mask_zero=True`
            Embedding's padding is 0. Padding positions get exactly 0 attribution.
        mask_id: the id perturbation methods put in place of a removed token (default: `padding_id`).

    Example:
        >>> cb = tb_xai.AttributionCallback("runs/exp1", x_test[:32], labels=y_test[:32],
        ...                                 methods=["saliency", "integrated_gradients"])
        >>> model.fit(x, y, epochs=20, callbacks=[cb, keras.callbacks.TensorBoard("runs/exp1")])
    """

    def __init__(
        self,
        log_dir: Union[str, os.PathLike],
        probe: ProbeLike,
        labels=None,
        methods: Sequence[MethodLike] = ("saliency", "integrated_gradients"),
        feature_names: Optional[Sequence[str]] = None,
        class_names: Optional[Sequence[str]] = None,
        target: TargetLike = "predicted",
        every_n_epochs: int = 1,
        max_overhead: Optional[float] = DEFAULT_MAX_OVERHEAD,
        batch_size: int = 1024,
        subdir: str = metadata.DEFAULT_SUBDIR,
        logits: bool = False,
        quality=quality_lib.DEFAULT,
        vocabulary=None,
        embedding_layer=None,
        padding_id: Optional[int] = 0,
        mask_id: Optional[int] = None,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"log_dir must be a non-empty path; received: {log_dir!r}")
        every_n_epochs = check_positive_int(every_n_epochs, "every_n_epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        if max_overhead is not None and (isinstance(max_overhead, bool) or not isinstance(max_overhead, (int, float))
                                         or not 0 < max_overhead <= 10):
            raise ValueError(f"max_overhead must be None or a fraction of training time in (0, 10] (0.05 = 5%); "
                             f"received: {max_overhead!r}")
        if isinstance(methods, (str, AttributionMethod)):
            methods = [methods]
        if not isinstance(methods, (list, tuple)):
            raise TypeError(
                f"methods must be a method name, an AttributionMethod, or a list of them; received: {methods!r}"
            )
        if not isinstance(logits, bool):
            raise TypeError(f"logits must be True or False; received: {logits!r}")
        if not methods:
            raise ValueError(f"methods must name at least one method; known methods: {sorted(methods_lib.REGISTRY)}")
        self.methods: List[AttributionMethod] = [methods_lib.get(m) for m in methods]
        names = [m.name for m in self.methods]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"methods {duplicates} are given more than once; give each configuration its own name=..."
            )
        self.probe = as_probe_set(probe, labels, feature_names, class_names)
        self._text_arguments = text_lib.check_arguments(vocabulary, embedding_layer, padding_id, mask_id)
        self.target = parse_target(target)
        if self.target.mode == "label" and self.probe.labels is None:
            raise ValueError("target='label' needs labels=...; none were given")
        self.every_n_epochs = every_n_epochs
        self.max_overhead = None if max_overhead is None else float(max_overhead)
        self.batch_size = batch_size
        self.logits = logits
        self.run_dir = os.path.join(os.fspath(log_dir), metadata.check_name(subdir, "subdir"))
        #: seconds each method took at the last logged step, for the curious and for benchmarks.
        self.timings: Dict[str, float] = {}
        #: the same in process CPU time (all threads), the measure `max_overhead` budgets.
        self.cpu_timings: Dict[str, float] = {}
        self._adapter = None
        self._writer: Optional[summary.SummaryWriter] = None
        self._wrote_probe = False
        self._last_epoch: Optional[int] = None
        self._last_logged: Optional[int] = None
        self._logged_steps: set = set()  # over every fit() this callback was given to
        self._warned_overwrite = False
        self._earlier_steps: set = set()  # steps an earlier run left in run_dir
        self._warned_vanishing: set = set()
        self._predictions: Optional[np.ndarray] = None
        #: the quality figures' state (tb_xai/quality.py): per-probe faithfulness, timings.
        self.quality = quality_lib.QualityMonitor(quality_lib.Quality.from_arg(quality))

        self._awaiting_build = False
        self._epoch_started = 0.0
        self.schedule = schedule_lib.Schedule(every_n_epochs, self.max_overhead)
        # CPU seconds of this fit: the callback's (setup and steps), its logged steps', the training epochs'.
        self._spent = self._stepped = self._trained = 0.0
        self._step_started = self._step_setup = 0.0
        self._fit_steps = self._epochs = 0  # steps logged and epochs ended in this fit
        self._warned_overhead = False
        self._warned_completeness: set = set()

    # tf_keras (Keras 2) asks each callback which batch hooks it implements, to skip calling the others;
    # Keras 3's Callback base has no such methods. Answering no keeps tf_keras's batches unsynced; a model built
    # by its first batch is then set up at the end of the first epoch (on_epoch_end) instead of its second batch.
    def _implements_train_batch_hooks(self) -> bool:
        return False

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False

    # -------------------------------------------------------------------------------- Keras lifecycle
    def on_train_begin(self, logs=None):
        started = time.process_time()
        self._last_epoch = self._last_logged = None
        self._warned_overwrite = False
        self.schedule.start_fit()
        self._spent = self._stepped = self._trained = 0.0
        self._fit_steps = self._epochs = 0
        # A model that was never called is only built by its first training batch: set up at the next one.
        self._awaiting_build = not self.model.built
        if not self._awaiting_build:
            self._setup()
        self._charge(time.process_time() - started)  # the setup is the callback's time too

    def on_train_batch_begin(self, batch, logs=None):
        # A begin hook, not an end hook: Keras hands batch-end hooks every batch's logs and, on JAX and
        # PyTorch, turns off its asynchronous dispatch for them; a begin hook gets no logs and costs one call.
        if self._awaiting_build and self.model.built:
            started = time.process_time()
            self._awaiting_build = False
            self._setup()
            spent = time.process_time() - started
            self._charge(spent)  # the callback's time, not the epoch's: charged, and left out of the epoch
            self._epoch_started += spent

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        trained = max(0.0, time.process_time() - self._epoch_started)
        self._trained += trained
        self._epochs += 1
        self.schedule.epoch_ended(trained)
        epochs = (self.params or {}).get("epochs")
        left = epochs - epoch - 1 if isinstance(epochs, int) else 0
        if not self.schedule.should_log(epoch, self._is_last(epoch), max(0, left)):
            return
        self._log(epoch)
        if logs is not None:  # for EarlyStopping, CSVLogger, TensorBoard placed after this callback
            logs.update(self.quality.logs_for(epoch))

    def on_train_end(self, logs=None):
        if self._last_epoch is not None and self._last_logged != self._last_epoch:
            skipped = self.schedule.skipped
            if skipped and skipped[-1] == self._last_epoch:
                skipped.pop()  # the last epoch is always logged
            self._log(self._last_epoch)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -------------------------------------------------------------------------------------- internals
    def _is_last(self, epoch: int) -> bool:
        """Whether `epoch` is the last of this fit (as its `epochs` says; EarlyStopping may end it sooner)."""
        epochs = (self.params or {}).get("epochs")
        return isinstance(epochs, int) and epoch >= epochs - 1

    def _setup(self) -> None:
        if self._adapter is not None and self._adapter.model is self.model:
            # Another fit() of the same model: its compiled functions stay valid.
            if self._writer is None:
                self._writer = self._new_writer()
            return
        self._adapter = adapt(self.model, self.probe, output=self.target.output, batch_size=self.batch_size,
                              logits=self.logits, binary_classes=self.target.mode == "label")
        check_target(self.target, self._adapter.n_outputs, self.probe.labels)
        text_lib.resolve(self._adapter, self.probe, self._text_arguments)
        if self.probe.class_names is not None and len(self.probe.class_names) != self._adapter.n_outputs:
            raise ValueError(
                f"class_names has {len(self.probe.class_names)} names but the explained output has "
                f"{self._adapter.n_outputs} unit(s)"
            )
        for method in self.methods:
            method.setup(self._adapter, self._adapter.probe)
            if getattr(method, "input_gradients", method.requires_gradients):
                self._adapter.check_input_gradients()
        # Every worker computes what the chief computes (see _new_writer): the sanity reference too.
        self.quality.bind(self._adapter, self._adapter.probe, self.methods,
                          lambda predictions: resolve_targets(self.target, predictions, self.probe.labels))
        if self._writer is None:
            self._writer = self._new_writer()
            if not self._logged_steps and self._adapter.is_chief():
                self._earlier_steps = _logged_steps(self.run_dir)

    def _new_writer(self):
        # Under a multi-worker strategy every worker computes every step, in the same order, and only the chief
        # writes: reading a model's synchronized-on-read variables (BatchNorm's statistics) outside a replica
        # is a collective op that all workers must join, so a chief explaining alone would stall or abort them.
        if not self._adapter.is_chief():
            return _UnwrittenSummaries()
        writer = summary.SummaryWriter(self.run_dir)
        self.run_dir = writer.run_dir  # a sibling when another training holds it (run_lock)
        return writer

    def _charge(self, seconds: float) -> None:
        """Counts `seconds` of CPU time as the callback's (what `xai/overhead` reports)."""
        self._spent += seconds

    def overhead(self) -> float:
        """The callback's CPU time in this fit so far over the training epochs' (what `xai/overhead` logs);
        inf before an epoch has ended."""
        return self._spent / self._trained if self._trained > 0 else math.inf

    def _log(self, step: int) -> None:
        started = self._step_started = time.process_time()
        self._step_setup = 0.0  # a setup inside the step (a model built during the epoch)
        try:
            self._log_step(step)
        finally:
            cost = time.process_time() - started
            self._charge(cost)
            self._stepped += cost - self._step_setup
            self.schedule.step_logged(cost - self._step_setup)
            self._fit_steps += 1
            self._warn_overhead()

    def _warn_overhead(self) -> None:
        """Once, without a budget: after 3 logged steps, the steps have cost more than `OVERHEAD_WARNING` of the
        training epochs' CPU time (the setup, paid once, is left out: fewer logged epochs would not save it)."""
        if (self.max_overhead is not None or self._warned_overhead or self._fit_steps < 3
                or not self._trained > 0 or not self._stepped / self._trained > OVERHEAD_WARNING):
            return
        self._warned_overhead = True
        logger.warning(
            "tb_xai: logging attributions has added %.0f%% to this training's CPU time so far (%d logged steps of "
            "%.1f ms on average; epochs of %.1f ms). Leave max_overhead at its default (0.05) to log fewer epochs "
            "and keep the callback near 5%% (the first and last epochs are always logged), or pass "
            "every_n_epochs=N. The scalar "
            "xai/overhead logs the callback's share at each logged step.",
            100 * self._stepped / self._trained, self._fit_steps, 1e3 * self._stepped / self._fit_steps,
            1e3 * self._trained / max(1, self._epochs))

    def _log_step(self, step: int) -> None:
        self._awaiting_build = False
        if self._adapter is None or self._adapter.model is not self.model:
            started = time.process_time()
            self._setup()
            self._step_setup = time.process_time() - started
        self._last_logged = step
        if step in self._logged_steps and not self._warned_overwrite:
            logger.warning(
                "tb_xai: epoch %d was already logged by an earlier fit(); its attributions are replaced. Pass "
                "initial_epoch= to fit() to continue the history, or give this fit another log_dir.", step)
            self._warned_overwrite = True
        elif step in self._earlier_steps and not self._warned_overwrite:
            logger.warning(
                "tb_xai: %s already holds summaries from an earlier run; steps logged again replace them (from "
                "step %d). Give this run its own log_dir to keep both, or pass initial_epoch= to continue it.",
                self.run_dir, step)
            self._warned_overwrite = True
        self._logged_steps.add(step)
        try:
            try:
                targets = self._log_probe_state(step)
            except Exception as error:  # an explanation must never stop the user's training
                self._record_failure(self.methods, step,
                                     f"the step could not be logged: {type(error).__name__}: {error}")
                return
            for method in self.methods:
                self._log_method(method, targets, step)
        finally:
            self._forget_gradients()
        if self.max_overhead is not None:
            self._write_scalar(quality_lib.SKIPPED_EPOCHS_TAG, len(self.schedule.skipped), step)
        self.quality.write(step, self._writer)
        if self._trained > 0:  # this step's cost so far counted (its flush is not)
            self._write_scalar(OVERHEAD_TAG, (self._spent + time.process_time() - self._step_started) / self._trained,
                               step)
        try:
            self._writer.flush()
        except Exception as error:
            logger.warning("tb_xai: flushing step %d to %s failed: %s", step, self.run_dir, error)

    def _log_probe_state(self, step: int) -> np.ndarray:
        """Writes the probe (once), the predictions and the explained targets; returns the targets."""
        probe, writer = self.probe, self._writer
        if not self._wrote_probe:
            for i, (name, array) in enumerate(zip(probe.names, probe.inputs)):
                writer.write(summary.probe_pb(name, array, feature_names=probe.feature_names_for(i),
                                              modality=probe.modality(i)), step)
                text = probe.text.get(name)
                if text is not None:
                    writer.write(summary.tokens_pb(name, probe.tokens(i), padding_id=text.padding_id,
                                                   mask_id=text.mask_id, padding_input=text.padding_input), step)
            if probe.labels is not None:
                writer.write(summary.labels_pb(probe.labels), step)
            self._wrote_probe = True
        predictions, targets = self._predictions_and_targets()
        # A tag's metadata is written once per event file: later steps build none.
        writer.write(summary.predictions_pb(predictions, output_name=self._adapter.output_name,
                                            class_names=probe.class_names, config=self._adapter.explained,
                                            describe=not writer.described(metadata.PREDICTIONS_TAG)), step)
        described = writer.described(metadata.TARGETS_TAG)
        writer.write(summary.targets_pb(targets, output_name=self._adapter.output_name, describe=not described,
                                        config=None if described else {**self.target.as_config(),
                                                                       **self._adapter.explained}), step)
        self._predictions = predictions
        return targets

    def _fuses_probe_gradients(self) -> bool:
        """Whether this step's predictions and the probe's gradients at its targets can come from one model call:
        the adapter can compute both at once (TensorFlow), every input is a float input explained by its own
        gradient, and the probe fits in one call."""
        adapter = self._adapter
        if not hasattr(adapter, "predict_with_gradients"):
            return False
        inputs = adapter.probe.inputs
        return (adapter.input_gradient_indices() == list(range(len(inputs)))
                and all(np.issubdtype(a.dtype, np.floating) for a in inputs) and len(inputs[0]) <= adapter.batch_size)

    def _predictions_and_targets(self):
        """The probe's predictions and the targets explained at this step. Where `_fuses_probe_gradients` and a
        method asks for the probe's gradients (saliency) or for its first pass (integrated gradients'), the call
        that computes the predictions also computes those gradients at the targets (the predictions' argmax,
        found in the call, for "predicted"), which the adapter keeps for the step's saliency, and that first
        pass; predictions and gradients are those the separate calls give, bit for bit."""
        adapter, probe = self._adapter, self.probe
        fuses = self._fuses_probe_gradients()
        primed, path = self._first_pass_request() if fuses else (None, None)
        if path is not None or (fuses and any(m.probe_gradients for m in self.methods)):
            rows = len(adapter.probe.inputs[0])
            if self.target.mode == "predicted":
                given = np.full(rows, -1, dtype=np.int32)
            else:  # a class index or the labels: known before the predictions
                given = resolve_targets(self.target, np.zeros((rows, adapter.n_outputs), np.float32), probe.labels)
            if path is None:
                predictions, chosen, selected, grads = adapter.predict_with_gradients(adapter.probe.inputs, given)
            else:
                predictions, chosen, selected, grads, (path_selected, path_grads, base_outputs) = \
                    adapter.predict_with_gradients(adapter.probe.inputs, given, path=path)
            targets = resolve_targets(self.target, predictions, probe.labels)
            if np.array_equal(targets, chosen):  # else (NaN predictions) the methods compute their own
                adapter.remember_gradients(adapter.probe.inputs, targets, selected, grads)
                if path is not None:
                    primed.prime_first_pass(adapter.probe.inputs, targets, path_selected, path_grads,
                                            base_outputs[0])
            return predictions, targets
        predictions = adapter.predict(probe.inputs)
        return predictions, resolve_targets(self.target, predictions, probe.labels)

    def _first_pass_request(self):
        """(the method, its rows) of the first method whose first pass (integrated gradients') the fused call of
        `_predictions_and_targets` also computes, when the adapter can and the rows fit in that call with the
        probe's; else (None, None)."""
        adapter = self._adapter
        if not getattr(adapter, "fuses_first_pass", False):
            return None, None
        for method in self.methods:
            request = getattr(method, "first_pass_points", None)
            if request is None or getattr(method, "model", None) is not adapter:
                continue
            path = request(adapter.probe.inputs)
            if path is None:
                continue
            if len(adapter.probe.inputs[0]) + len(path[0][0]) + len(path[2][0]) > adapter.batch_size:
                return None, None
            return method, path
        return None, None

    def _forget_gradients(self) -> None:
        forget = getattr(self._adapter, "forget_gradients", None)
        if forget is not None:
            forget()
        for method in self.methods:
            forget = getattr(method, "forget_first_pass", None)
            if forget is not None:
                forget()

    def _log_method(self, method: AttributionMethod, targets: np.ndarray, step: int) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            attributions = method.attribute(self._adapter.probe.inputs, targets)
            explained = [(i, name, values) for i, (name, values) in enumerate(zip(self.probe.names, attributions))
                         if values is not None]  # None: the method does not explain that input
            for _, name, values in explained:
                bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
                if bad:
                    raise FloatingPointError(
                        f"{bad} of {np.size(values)} attribution values for input {name!r} are NaN or inf "
                        "(diverged weights?); nothing was logged for this step"
                    )
            tags = [metadata.attribution_tag(method.name, name) for _, name, _ in explained]
            config = None
            if not all(self._writer.described(tag) for tag in tags):  # the metadata is written once per file
                config = method.config()
                if self.max_overhead is not None:
                    config["max_overhead"] = self.max_overhead
                if self._adapter.logits:  # the explained output is not the model's: say so next to the values
                    config = {**config, "explains": "logits", "stripped": self._adapter.explained["stripped"]}
            summaries = [
                summary.attribution_pb(method.name, name, values, feature_names=self.probe.feature_names_for(i),
                                       modality=self.probe.modality(i), config=config,
                                       describe=not self._writer.described(tag))
                for (i, name, values), tag in zip(explained, tags)
            ]
            for pb in summaries:
                self._writer.write(pb, step)
            self._warn_if_vanishing(method, [values for _, _, values in explained], targets, step)
            self._log_diagnostics(method, step)
            self.quality.observe(method, attributions, targets)
        except Exception as error:  # an explanation must never stop the user's training
            self._record_failure([method], step, f"{type(error).__name__}: {error}")
        finally:
            self.timings[method.name] = time.perf_counter() - start
            self.cpu_timings[method.name] = time.process_time() - cpu

    def _warn_if_vanishing(self, method: AttributionMethod, attributions, targets: np.ndarray, step: int) -> None:
        """Warns once per method when most probes' attributions are zero (or vanishingly small)."""
        if method.name in self._warned_vanishing:
            return
        # Each probe's largest |value| (what vanishing_rows looks at), without a float64 copy of every value.
        peak = np.max([np.abs(np.asarray(a)).reshape(len(a), -1).max(axis=1, initial=0) for a in attributions], axis=0)
        dead = vanishing_rows(peak.astype(np.float64)[:, None])
        if dead.sum() * 2 <= len(dead):
            return
        self._warned_vanishing.add(method.name)
        logger.warning("tb_xai: %s at step %d: %s", method.name, step,
                       vanishing_reason(int(dead.sum()), len(dead), self._adapter.explained,
                                        self._predictions, targets, type(method).name))

    def _log_diagnostics(self, method: AttributionMethod, step: int) -> None:
        """Writes the method's diagnostics of this step as scalars `xai/<method>/<name>`; warns once on a
        completeness error beyond its allowance."""
        diagnostics = getattr(method, "diagnostics", None)
        values = diagnostics() if callable(diagnostics) else {}
        for key, value in values.items():
            self._write_scalar(quality_lib.scalar_tag(method.name, key), value, step)
        over = values.get("probes_over_tolerance", 0)
        if over and method.name not in self._warned_completeness:
            self._warned_completeness.add(method.name)
            logger.warning(
                "tb_xai: %s: at step %d, %d probe(s) miss completeness by more than the allowance after "
                "refinement (largest relative error %.3g); a gradient that is zero or discontinuous along the "
                "path (saturated outputs: try logits=True; integer-like inputs) is the usual cause. The count "
                "is logged every step as xai/%s/probes_over_tolerance.",
                method.name, step, over, values.get("completeness_error_max", float("nan")), method.name)

    def _write_scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.write(quality_lib.scalar_pb(tag, float(value)), step)

    def _record_failure(self, methods: Sequence[AttributionMethod], step: int, message: str) -> None:
        """Warns, and writes a FAILURE summary for each method; a writer that fails too only warns."""
        for method in methods:
            logger.warning("tb_xai: %s failed at step %d: %s", method.name, step, message)
            try:
                self._writer.write(summary.failure_pb(method.name, message), step)
            except Exception as error:
                logger.warning("tb_xai: the failure of %s at step %d could not be written either: %s",
                               method.name, step, error)


class _UnwrittenSummaries:
    """The writer of a worker that is not the chief: it computes every step with the chief, writes nothing."""

    def write(self, pb, step) -> None:
        pass

    def described(self, tag) -> bool:
        return True  # nothing is written: no metadata to build

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _logged_steps(run_dir: str) -> set:
    """The steps at which an earlier run logged predictions in `run_dir` (empty when there is none)."""
    from tensorboard.backend.event_processing import event_file_loader

    steps = set()
    for path in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))):
        try:
            for event in event_file_loader.EventFileLoader(path).Load():
                if any(v.tag == metadata.PREDICTIONS_TAG for v in event.summary.value):
                    steps.add(int(event.step))
        except Exception as error:  # a damaged file: say so, but it must not stop training
            logger.warning("tb_xai: could not read the earlier run in %s (%s); steps it holds may be replaced",
                           path, error)
    return steps


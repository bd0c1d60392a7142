"""lm-evaluation-harness model class over a minitron (megatron-core) model.

    import lm_eval
    from minitron.eval.lm_eval_adapter import MinitronLM
    lm = MinitronLM.load("ckpt/student")                # or MinitronLM(model, arch, tokenizer)
    lm_eval.simple_evaluate(model=lm, tasks=["my_task"], task_manager=...)

or from the command line: ``minitron lm-eval --model ckpt/student --tasks my_task
--include-path tasks/``. Registered with lm-eval as ``minitron``
(``lm_eval --model minitron --model_args model=ckpt/student``) once this module
is imported. Implements ``loglikelihood`` (batched, vocab-parallel ``is_greedy``)
and ``loglikelihood_rolling``; generation is not supported yet.

lm-eval is an optional dependency: ``pip install lm-eval``.
"""

from __future__ import annotations

from minitron.eval.scoring import Request, encode_pair, score_requests

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except Exception as e:  # noqa: BLE001  (optional dependency; import errors vary)
    raise ImportError("the lm-eval adapter needs lm-eval: pip install lm-eval") from e


@register_model("minitron")
class MinitronLM(LM):
    """An lm-eval ``LM`` scoring requests with a megatron-core model at any TP/PP."""

    def __init__(self, model, arch, tokenizer, batch_size: int = 32, max_length: int = 2048):
        super().__init__()
        self.model, self.arch, self.tok = model, arch, tokenizer
        self.batch_size, self._max_length = int(batch_size), int(max_length)
        sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        self.prefix_id = int(sep or 0)

    @classmethod
    def load(cls, model: str, tp: int = 1, pp: int = 1, dtype: str = "float32",
             batch_size: int = 32, max_length: int = 2048) -> "MinitronLM":
        """From a minitron checkpoint or HF source (initialises the TP/PP runtime)."""
        from minitron.data.tokenizer import load_tokenizer
        from minitron.models.load import load_model
        from minitron.parallel import runtime

        runtime.init(int(tp), int(pp))
        m, arch, _ = load_model(model, dtype)
        return cls(m, arch, load_tokenizer(model), batch_size, max_length)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config=None) -> "MinitronLM":
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
        if "model" not in args:
            raise ValueError("--model_args needs model=<checkpoint or HF source>")
        extra = {k: v for k, v in (additional_config or {}).items()
                 if k in ("batch_size",) and v is not None}
        return cls.load(**{**args, **extra})

    # Every rank runs every request (the ranks split the model, not the data), so lm-eval must
    # see one replica: rank 0 of 1 everywhere, or it would hand each rank different documents.
    @property
    def rank(self):
        return 0

    @property
    def world_size(self):
        return 1

    def _score(self, requests: list[Request], greedy: bool) -> list[tuple[float, bool]]:
        return score_requests(self.model, requests, self.arch.vocab_size,
                              batch_size=self.batch_size, max_length=self._max_length,
                              greedy=greedy)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        reqs = [encode_pair(self.tok, ctx, cont, self.prefix_id)
                for ctx, cont in (r.args for r in requests)]
        return self._score(reqs, greedy=True)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        windows, owner = [], []
        for i, r in enumerate(requests):
            ids = self.tok(r.args[0], add_special_tokens=False)["input_ids"]
            for ctx, pred in map(make_disjoint_window, get_rolling_token_windows(
                    ids, self.prefix_id, self._max_length, 1)):
                windows.append(Request(tuple(ctx), tuple(pred)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, self._score(windows, greedy=False)):
            totals[i] += ll
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("minitron's lm-eval adapter scores log-likelihoods only; "
                                  "generation tasks are not supported yet")

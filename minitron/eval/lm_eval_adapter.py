"""lm-evaluation-harness model class over a minitron (megatron-core) model.

    import lm_eval
    from minitron.eval.lm_eval_adapter import MinitronLM
    lm = MinitronLM.load("ckpt/student")                # or MinitronLM(model, arch, tokenizer)
    lm_eval.simple_evaluate(model=lm, tasks=["my_task"], task_manager=...)

or from the command line: ``minitron lm-eval --model ckpt/student --tasks my_task
--include-path tasks/``. Registered with lm-eval as ``minitron``
(``lm_eval --model minitron --model_args model=ckpt/student``) once this module
is imported. Implements ``loglikelihood`` (batched, vocab-parallel ``is_greedy``),
``loglikelihood_rolling`` and ``generate_until`` (megatron-core's inference engine:
``until``, ``max_gen_toks``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``), and
lm-eval's chat-template interface (``--apply_chat_template``), rendering with the same
``ChatRenderer`` that ``minitron align`` trains with.

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

    def __init__(
        self,
        model,
        arch,
        tokenizer,
        batch_size: int = 32,
        max_length: int = 2048,
        chat: str = "auto",
        seed: int = 1234,
        extra_eos=(),
    ):
        super().__init__()
        self.model, self.arch, self.tok = model, arch, tokenizer
        self.batch_size, self._max_length = int(batch_size), int(max_length)
        sep = (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        )
        self.prefix_id = int(sep or 0)
        self.chat, self.seed, self.extra_eos = chat, int(seed), list(extra_eos)
        self._generator = None

    @classmethod
    def load(
        cls,
        model: str,
        tp: int = 1,
        pp: int = 1,
        dtype: str = "float32",
        batch_size: int = 32,
        max_length: int = 2048,
    ) -> MinitronLM:
        """From a minitron checkpoint or HF source (initialises the TP/PP runtime)."""
        from minitron.checkpoint.load import load_model
        from minitron.data.tokenizer import load_tokenizer, tokenizer_dir
        from minitron.generate.engine import generation_eos
        from minitron.parallel import runtime

        runtime.init(int(tp), int(pp))
        m, arch, _ = load_model(model, dtype)
        return cls(
            m,
            arch,
            load_tokenizer(model),
            batch_size,
            max_length,
            extra_eos=generation_eos(tokenizer_dir(model)),
        )

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config=None) -> MinitronLM:
        args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
        if "model" not in args:
            raise ValueError("--model_args needs model=<checkpoint or HF source>")
        extra = {
            k: v
            for k, v in (additional_config or {}).items()
            if k in ("batch_size",) and v is not None
        }
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
        return score_requests(
            self.model,
            requests,
            self.arch.vocab_size,
            batch_size=self.batch_size,
            max_length=self._max_length,
            greedy=greedy,
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        reqs = [
            encode_pair(self.tok, ctx, cont, self.prefix_id)
            for ctx, cont in (r.args for r in requests)
        ]
        return self._score(reqs, greedy=True)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        windows, owner = [], []
        for i, r in enumerate(requests):
            ids = self.tok(r.args[0], add_special_tokens=False)["input_ids"]
            for ctx, pred in map(
                make_disjoint_window,
                get_rolling_token_windows(ids, self.prefix_id, self._max_length, 1),
            ):
                windows.append(Request(tuple(ctx), tuple(pred)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, self._score(windows, greedy=False)):
            totals[i] += ll
        return totals

    # ------------------------------------------------------------------ generation

    def generate_until(self, requests, disable_tqdm: bool = False):
        """Completions of ``(context, gen_kwargs)`` requests, as lm-eval's HF model reads
        ``gen_kwargs``: ``until`` (stop strings; default the end-of-sequence token),
        ``max_gen_toks`` (default 256), ``do_sample`` and ``temperature`` (0 means greedy),
        ``top_k``, ``top_p``. Contexts longer than ``max_length - max_gen_toks`` keep their end.
        Requests with the same settings are generated together, batched by length."""
        from minitron.config.loader import validate

        groups: dict = {}
        for i, r in enumerate(requests):
            context, kwargs = r.args
            s = validate(sampling_from_gen_kwargs(kwargs, self.seed))
            ids = self.tok(context, add_special_tokens=False)["input_ids"]
            ids = ids[-max(1, self._max_length - s.max_new_tokens) :] or [self.prefix_id]
            groups.setdefault(repr(sorted(vars(s).items())), (s, []))[1].append((i, ids))
        out = [""] * len(requests)
        for s, items in groups.values():
            done = self.generator().generate([ids for _, ids in items], s)
            for (i, _), c in zip(items, done):
                out[i] = c.text
        return out

    def generator(self):
        from minitron.generate.engine import Generator

        if self._generator is None:
            self._generator = Generator(
                self.model, self.arch, self.tok, self.batch_size, extra_eos=self.extra_eos
            )
        return self._generator

    # ------------------------------------------------------------------ chat templates

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tok, "name_or_path", "minitron")).replace("/", "__")

    def chat_template(self, chat_template=False):
        """The template lm-eval fingerprints its cache with: the tokenizer's own, or a name for
        the plain ``User: / Assistant:`` rendering when it has none."""
        if not chat_template:
            return None
        renderer = self._renderer()
        return renderer.tok.chat_template if renderer.use_tokenizer else "plain"

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        return self._renderer().text(list(chat_history), add_generation_prompt)

    def _renderer(self):
        from minitron.align.data import ChatRenderer

        return ChatRenderer(self.tok, self.chat)


def sampling_from_gen_kwargs(kwargs: dict, seed: int):
    """lm-eval's ``gen_kwargs`` as a ``SamplingConfig`` (unvalidated). Unknown keys are an
    error, so a task's setting is never silently dropped."""
    from minitron.config.generate import SamplingConfig

    kw = dict(kwargs or {})
    until = kw.pop("until", None)
    until = [until] if isinstance(until, str) else list(until or [])
    do_sample, temperature = kw.pop("do_sample", None), kw.pop("temperature", None)
    temperature = float(temperature if temperature is not None else 1.0 if do_sample else 0.0)
    do_sample = bool(temperature > 0 if do_sample is None else do_sample) and temperature > 0
    s = SamplingConfig(
        max_new_tokens=int(kw.pop("max_gen_toks", 256)),
        do_sample=do_sample,
        temperature=temperature if do_sample else 1.0,
        top_k=int(kw.pop("top_k", 0) or 0) if do_sample else 0,
        top_p=float(kw.pop("top_p", 0.0) or 0.0) if do_sample else 0.0,
        seed=seed,
        stop=[u for u in until if u],
    )
    if kw:
        raise ValueError(
            f"unsupported generation settings {sorted(kw)}: minitron's lm-eval "
            "model reads until, max_gen_toks, do_sample, temperature, top_k, top_p"
        )
    return s

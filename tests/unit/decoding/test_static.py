"""The static-shape decode step (src/decoding/static.py) gives the eager search's tokens and beam scores,
eagerly and compiled (CPU inductor; CUDA graphs when a GPU is present)."""

from dataclasses import replace

import pytest
import torch
from torch._dynamo.utils import counters

from src.config import DecodeConfig
from src.decoding import autoregressive, generate, static
from src.decoding.autoregressive import beam_search, greedy, sample
from src.decoding.int8 import int8_weights
from src.decoding.static import StaticDecoder, static_decoder
from src.models.nar import CMLM
from src.models.rnn_attn import RNNAttention
from src.models.transformer import DecoderLM, EncoderDecoder, PrefixLM
from src.models.vocab import EOS, PAD

V = 30
SIZE = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
MODELS = [EncoderDecoder, PrefixLM, DecoderLM]


def model_and_src(cls, batch=6, device="cpu"):
    """A random model and a source (right-padded) or prompt (left-padded) with padding."""
    torch.manual_seed(1)
    model = cls(V, **SIZE).eval()
    src = torch.randint(4, V, (batch, 7))
    if cls is DecoderLM:  # left-padded prompts
        src[0, :3] = PAD
    else:  # right-padded sources
        src[1, 4:] = PAD
        src[-1, 2:] = PAD
    return model.to(device), src.to(device)


def ends_early(tokens: torch.Tensor) -> bool:
    """Some rows end with <eos> before others (the masking of finished rows is exercised)."""
    lengths = ((tokens != PAD) & (tokens != EOS)).sum(-1)
    return bool((tokens == EOS).any()) and lengths.min() < lengths.max()


@pytest.mark.parametrize("cls", MODELS)
def test_static_step_gives_the_eager_tokens(cls):
    model, src = model_and_src(cls)
    eager = greedy(model, src, 20)
    static = StaticDecoder(model)
    assert torch.equal(greedy(static, src, 20), eager)
    assert torch.equal(greedy(static, src, 20), eager)  # pooled buffers reused: a second call starts clean


@pytest.mark.parametrize("cls", MODELS)
def test_static_step_handles_finished_rows(cls):
    """Seeded sampling from a random model ends rows at different steps: finished rows feed <pad> to the step."""
    model, src = model_and_src(cls)
    eager = sample(model, src, 30, seed=0)
    assert ends_early(eager)
    assert torch.equal(sample(StaticDecoder(model), src, 30, seed=0), eager)


@pytest.mark.parametrize("cls", MODELS)
def test_static_beam_search_matches_eager(cls):
    model, src = model_and_src(cls, batch=3)
    tokens, scores = beam_search(model, src, 20, beam_size=3)
    s_tokens, s_scores = beam_search(StaticDecoder(model), src, 20, beam_size=3)
    assert torch.equal(s_tokens, tokens)
    assert torch.allclose(s_scores, scores, atol=1e-4)


@pytest.mark.parametrize("cls", MODELS + [RNNAttention])
def test_batched_beam_search_is_each_sentence_searched_alone(cls):
    """A beam step moves rows among one sentence's beams only, so its source side is not reordered
    (reorder_state's same_source): each sentence of a batch gets the beams it gets alone, eagerly and on the static
    step."""
    model, src = model_and_src(cls, batch=3)
    for dec in [model] + ([] if cls is RNNAttention else [StaticDecoder(model)]):
        tokens, scores = beam_search(dec, src, 12, beam_size=3)
        for i in range(src.size(0)):
            alone, alone_scores = beam_search(dec, src[i : i + 1], 12, beam_size=3)
            assert torch.equal(tokens[i, :, : alone.size(-1)], alone[0]), (cls.__name__, i)
            assert (tokens[i, :, alone.size(-1) :] == PAD).all()
            assert torch.allclose(scores[i], alone_scores[0], atol=1e-4)


@pytest.mark.parametrize("compile", [False, True])
def test_static_step_follows_weight_updates(compile):
    """The step reads transposed copies of the weights (decode_linear): after the model trains on, the copies follow
    (same tokens as eager with the new weights), and the model's own parameters and modules are left as they were."""
    model, src = model_and_src(EncoderDecoder)
    dec = static_decoder(model, compile=compile)
    assert torch.equal(greedy(dec, src, 12), greedy(model, src, 12))
    params = {n: p for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    eager = greedy(model, src, 12)
    assert torch.equal(greedy(dec, src, 12), eager)
    assert {n: p for n, p in model.named_parameters()} == params  # the same Parameter objects, not the copies
    assert all(p.is_contiguous() for p in model.parameters())
    assert not any("forward" in vars(m) for m in model.modules())  # nn.Linear.forward restored after each step


@pytest.mark.parametrize("compile", [False, True])
def test_static_step_follows_a_fused_optimizer(compile):
    """AdamW(fused=True) (the tasks' optimizer) moves the weights without bumping their version counters: the copies
    (the transposed fp32 ones, the bf16 ones, the blocked ones of the compiled step) still follow, at one row and
    at several, in fp32 and under bf16 autocast."""
    model, src = model_and_src(EncoderDecoder)
    dec = static_decoder(model, compile=compile)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    for _ in range(2):
        with torch.no_grad():
            for batch in (src, src[:1]):
                assert torch.equal(greedy(dec, batch, 8), greedy(model, batch, 8))
                with torch.autocast("cpu", torch.bfloat16):
                    greedy(dec, batch, 8)  # the bf16 copies exist from here on
        version = model.lm_head.weight._version
        model(src, src).logsumexp(-1).mean().backward()
        opt.step()
        assert model.lm_head.weight._version == version  # why the decoder cannot rely on versions alone
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        bf16 = StaticDecoder(model, compile=compile)  # bf16 copies made from the current weights
        assert torch.equal(greedy(dec, src, 8), greedy(bf16, src, 8))


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("max_new_tokens,fixed", [(4, True), (13, True), (24, False)])
def test_greedy_blocks_give_the_token_by_token_tokens(cls, max_new_tokens, fixed):
    """Greedy in blocks of k tokens per call (greedy_block; the rest token by token when k does not divide the
    length, a block never steps past the last token read) gives the step-by-step search's tokens, with rows that
    finish early and with <eos> banned; a repetition control makes greedy step token by token."""
    model, src = model_and_src(cls)
    blocks, steps = StaticDecoder(model, block_size=3), StaticDecoder(model, block_size=0)
    eager = greedy(model, src, max_new_tokens, fixed)
    assert torch.equal(greedy(blocks, src, max_new_tokens, fixed), eager)
    assert torch.equal(greedy(steps, src, max_new_tokens, fixed), eager)
    assert torch.equal(greedy(blocks, src, max_new_tokens, fixed, repetition_penalty=1.5),
                       greedy(model, src, max_new_tokens, fixed, repetition_penalty=1.5))


def test_greedy_blocks_stop_once_every_row_finished():
    """A block that ends with every row finished ends the search: the output is cut as the step-by-step one is."""
    model, src = model_and_src(EncoderDecoder)
    with torch.no_grad():  # the decoder's output is the final norm's bias, whose logit is highest at <eos>
        model.decoder.norm.weight.zero_(), model.decoder.norm.bias.fill_(1.0)
        model.lm_head.weight.zero_(), model.lm_head.weight[EOS].fill_(1.0)
    out = greedy(StaticDecoder(model, block_size=3), src, 30)
    assert torch.equal(out, greedy(model, src, 30)) and out.shape == (src.size(0), 1)


def test_static_step_under_bf16_autocast_reads_bf16_copies():
    """Under bf16 autocast the step streams bf16 copies of the weights (half the bytes); its greedy tokens are the
    eager autocast path's up to bf16 rounding (the two round in different orders), and the fp32 copies are kept."""
    model, src = model_and_src(EncoderDecoder)
    dec = StaticDecoder(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager, static = greedy(model, src, 12), greedy(dec, src, 12)
    assert (eager == static).float().mean() >= 0.9
    assert {dtype for dtype in dec.weights.copies} == {torch.bfloat16}
    assert all(wt.dtype == torch.bfloat16 for _, wt, _, _ in dec.weights.copies[torch.bfloat16])
    assert torch.equal(greedy(dec, src, 12), greedy(model, src, 12))  # fp32 again: fp32 copies, exact


@pytest.mark.parametrize("cls", MODELS)
def test_int8_step_stays_close_to_fp32_and_follows_weight_updates(cls):
    """decode.int8: the static step on per-channel int8 weights (dynamic int8 activations) gives logits close to the
    fp32 step's (tokens of a trained model: tests/e2e/test_eval.py), serves beam search as greedy, and repacks after
    the weights change; the model keeps its fp32 parameters and its nn.Linear forwards."""
    model, src = model_and_src(cls)
    fp32, int8 = StaticDecoder(model), static_decoder(model, int8=True)
    cos = torch.nn.functional.cosine_similarity

    def step_logits(dec):  # the second step (a decoder's prompt goes through the eager decoder at prefill)
        logits, state = dec.prefill(src, 10)
        return dec.step(torch.full_like(src[:, 0], 7), state)
    logits, q_logits = step_logits(fp32), step_logits(int8)
    assert not torch.equal(q_logits, logits)  # the int8 weights are read
    assert cos(q_logits, logits, dim=-1).min() > 0.995
    tokens = greedy(int8, src, 12)
    assert (tokens == greedy(model, src, 12)).float().mean() >= 0.8
    assert beam_search(int8, src[:2], 12, beam_size=3)[0].shape[:2] == (2, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    new_logits = step_logits(int8)
    assert cos(new_logits, step_logits(fp32), dim=-1).min() > 0.995
    assert cos(new_logits, q_logits, dim=-1).min() < 0.99  # repacked
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any("forward" in vars(m) for m in model.modules())
    assert generate(model, src, DecodeConfig(int8=True), 12).shape == tokens.shape


def dequantized(model):
    """A copy of `model` whose decoder Linears and lm_head hold s ⊙ Q (int8_weights), in fp32."""
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in [*model.decoder.layers.modules(), model.lm_head]:
            if isinstance(m, torch.nn.Linear):
                q, scale = int8_weights(m.weight)
                m.weight.copy_(q.float() * scale[:, None])
    return model


@pytest.mark.slow
def test_compiled_int8_step_computes_with_the_int8_weights_and_follows_updates():
    """decode.int8 with decode.compile: one row reads Q and s in the compiled reduction, several rows the fp32
    s ⊙ Q, so every batch size gives the tokens of the model with dequantized weights; a weight update refreshes the
    int8 copies in place (the same graphs serve it)."""
    torch._dynamo.reset()
    model, src = model_and_src(EncoderDecoder)
    dec = static_decoder(model, compile=True, int8=True)
    assert DecodeConfig(int8=True, compile=True).int8
    for rows in (src[:1], src):
        assert torch.equal(greedy(dec, rows, 12), greedy(dequantized(model), rows, 12))
    compiled = len(dec._compiled)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for rows in (src[:1], src):
        assert torch.equal(greedy(dec, rows, 12), greedy(dequantized(model), rows, 12))
    assert len(dec._compiled) == compiled
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_compiled_cpu_steps_compile_once_per_layout_and_bypass_dynamo():
    """A compiled CPU decoder compiles each function once per layout (traced.compile_flat) and calls it directly:
    greedy at 2 rows is the step (encdec's <bos>) and greedy_block (one token a call); beam 3 adds its
    choose-reorder-step function at 6 rows; bf16 autocast is a layout of its own. Calling them again compiles
    nothing, never enters Dynamo, and gives the eager tokens."""
    torch._dynamo.reset()
    model, src = model_and_src(EncoderDecoder, batch=2)
    dec = StaticDecoder(model, compile=True)
    greedy(dec, src, 10, fixed_length=True)
    assert [key[0].__name__ for key in dec._compiled] == ["static_step", "greedy_block"]
    beam_search(dec, src, 10, beam_size=3, fixed_length=True)
    assert [key[0].__name__ for key in dec._compiled] == ["static_step", "greedy_block", "beam_advance"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = greedy(dec, src, 10, fixed_length=True)
    assert len(dec._compiled) == 5
    frames = counters["stats"]["calls_captured"]
    for _ in range(2):
        assert torch.equal(greedy(dec, src, 10, fixed_length=True), greedy(model, src, 10, fixed_length=True))
        tokens, scores = beam_search(dec, src, 10, beam_size=3, fixed_length=True)
        assert torch.equal(tokens, beam_search(model, src, 10, beam_size=3, fixed_length=True)[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(greedy(dec, src, 10, fixed_length=True), bf16)
    assert len(dec._compiled) == 5
    assert counters["stats"]["calls_captured"] == frames  # Dynamo traced nothing


@pytest.mark.slow
def test_layouts_past_the_traced_ones_go_through_dynamo(monkeypatch):
    """Past TRACED_LAYOUTS layouts a compiled CPU decoder compiles no more of its own: torch.compile serves the rest
    (automatic dynamic shapes: one graph for many), with the eager tokens."""
    torch._dynamo.reset()
    monkeypatch.setattr(static, "TRACED_LAYOUTS", 1)
    model, src = model_and_src(EncoderDecoder, batch=4)
    dec = StaticDecoder(model, compile=True)
    frames = counters["stats"]["calls_captured"]
    for rows in (2, 3, 4, 2):
        assert torch.equal(greedy(dec, src[:rows], 10), greedy(model, src[:rows], 10)), rows
    tokens, _ = beam_search(dec, src[:2], 10, beam_size=3)
    assert torch.equal(tokens, beam_search(model, src[:2], 10, beam_size=3)[0])
    assert len(dec._compiled) == 1 and counters["stats"]["calls_captured"] > frames


def test_static_state_is_updated_in_place():
    """A captured graph reads fixed addresses: a step must not rebind any tensor of the state."""
    model, src = model_and_src(EncoderDecoder)
    dec = StaticDecoder(model)
    logits, state = dec.prefill(src, 10)
    before = [t.data_ptr() for t in state.tensors()] + [state.pos.data_ptr()]
    pos = int(state.pos)
    dec.step(logits.argmax(-1), state)
    dec.reorder_state(state, torch.arange(src.size(0)).flip(0))
    assert [t.data_ptr() for t in state.tensors()] + [state.pos.data_ptr()] == before
    assert int(state.pos) == pos + 1


def test_generate_compile_flag_leaves_eager_models_alone():
    """rnn_attn and nar have no static step: compile=True decodes them eagerly, with the same result."""
    from src.models.rnn_attn import RNNAttention

    model = RNNAttention(V, **SIZE).eval()
    src = torch.randint(4, V, (2, 5))
    assert torch.equal(generate(model, src, DecodeConfig(compile=True), 8), generate(model, src, DecodeConfig(), 8))


def _compiled_matches_eager(device):
    for cls in MODELS:
        model, src = model_and_src(cls, batch=6, device=device)
        eager = greedy(model, src, 16)
        assert torch.equal(generate(model, src, DecodeConfig(compile=True), 16), eager), cls.__name__
        # one row: the compiled step's own dot-product loops and explicit attention (decode_linear, attention.py)
        assert torch.equal(generate(model, src[:1], DecodeConfig(compile=True), 16), greedy(model, src[:1], 16))
        # beam on the same compiled step: 2 sentences × 3 beams = the greedy batch of 6, so no new graph
        tokens, scores = beam_search(model, src[:2], 16, beam_size=3)
        c_tokens, c_scores = beam_search(static_decoder(model, compile=True), src[:2], 16, beam_size=3)
        assert torch.equal(c_tokens[:, 0], tokens[:, 0]), cls.__name__
        assert torch.allclose(c_scores, scores, atol=1e-3), cls.__name__
        # beam 3 on one sentence: 3 rows, inside REDUCTION_ROWS, so x·Wᵀ is the compiled reduction over 3 rows
        tokens, scores = beam_search(model, src[:1], 16, beam_size=3)
        c_tokens, c_scores = beam_search(static_decoder(model, compile=True), src[:1], 16, beam_size=3)
        assert torch.equal(c_tokens, tokens), cls.__name__
        assert torch.allclose(c_scores, scores, atol=1e-3), cls.__name__


@pytest.mark.slow
def test_compiled_static_step_matches_eager_on_cpu():
    torch._dynamo.reset()
    _compiled_matches_eager("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA graphs: mode='reduce-overhead')")
def test_cuda_graph_static_step_matches_eager():
    torch._dynamo.reset()
    _compiled_matches_eager("cuda")


def test_buffers_made_under_inference_mode_serve_calls_outside_it():
    """A run's test stage decodes under inference_mode, its speed timing under no_grad, on the same pooled buffers."""
    model, src = model_and_src(EncoderDecoder, batch=2)
    dec, beam = StaticDecoder(model), DecodeConfig(method="beam", beam_size=3)
    with torch.inference_mode():
        first = generate(dec, src, beam, 12)
    assert torch.equal(generate(dec, src, beam, 12), first)
    assert torch.equal(first, generate(model, src, beam, 12))


# (method, batch) calls in one process from a cold compiler; beam: 3 beams, so its step runs at 3·batch rows
CALL_ORDERS = {
    "beam first": [("beam", 2)],
    "greedy B=1, then beam": [("greedy", 1), ("beam", 1)],
    "greedy B=1, B=7, B=1": [("greedy", 1), ("greedy", 7), ("greedy", 1)],
    "NAR after AR": [("greedy", 2), ("nar", 2)],
}


@pytest.mark.slow
@pytest.mark.parametrize("order", CALL_ORDERS)
def test_compiled_fast_paths_work_in_any_call_order(order):
    """generate(..., compile=True) gives the eager tokens (fp32: identical) whatever came before it: the first step at
    a new batch size (a beam's B·k expansion included) compiles its graph instead of failing or reusing another."""
    torch._dynamo.reset()
    model, src = model_and_src(EncoderDecoder, batch=7)
    torch.manual_seed(1)
    nar = CMLM(V, **SIZE).eval()
    for method, batch in CALL_ORDERS[order]:
        m, decode = ((nar, DecodeConfig(method="mask_predict", passes=2)) if method == "nar"
                     else (model, DecodeConfig(method=method, beam_size=3)))
        fast = generate(m, src[:batch], replace(decode, compile=True), 12)
        assert torch.equal(fast, generate(m, src[:batch], decode, 12)), (method, batch)
    compiled = {id(d): len(d._compiled) for per_model in static._decoders.values() for d in per_model.values()}
    assert torch.equal(generate(m, src[:batch], replace(decode, compile=True), 12), fast)
    assert compiled == {id(d): len(d._compiled)  # the same call again compiles nothing
                        for per_model in static._decoders.values() for d in per_model.values()}


def test_periodic_finished_check_cuts_trailing_pads(monkeypatch):
    """Checking 'all finished?' every step or every SYNC_EVERY steps gives the same tensor."""
    model, src = model_and_src(EncoderDecoder)
    monkeypatch.setattr(autoregressive, "SYNC_EVERY", 1)
    every_step = sample(model, src, 200, temperature=2.0, seed=0)
    assert every_step.size(1) < 200 and (every_step[:, -1] == EOS).any()  # all rows finished, then it stopped
    monkeypatch.setattr(autoregressive, "SYNC_EVERY", 7)
    assert torch.equal(sample(model, src, 200, temperature=2.0, seed=0), every_step)

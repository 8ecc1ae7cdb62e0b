"""The HF peers (src/speed/peers.py): parameter counts match ours within PARAM_TOLERANCE (nothing timed)."""
import pytest

from src.speed import peers
from src.speed.compare import DEFAULT_SPEC, build_ours


@pytest.mark.skipif(not peers.available(), reason="transformers not installed (pip install -e '.[compare]')")
@pytest.mark.parametrize("arch,model", [("encdec", "src.models.transformer.EncoderDecoder"),
                                        ("decoder", "src.models.transformer.DecoderLM"),
                                        ("encoder", "src.models.transformer.EncoderClassifier")])
def test_peer_parameter_count_matches_ours(arch, model):
    spec = {**DEFAULT_SPEC, "arch": arch, "model": model, "arch_params": {}}
    ours = sum(p.numel() for p in build_ours(spec).parameters())
    peer = peers.build_peer(arch, spec["vocab"], spec["d_model"], spec["n_heads"], spec["n_layers"], spec["d_ff"],
                            max_positions=spec["src_len"] + spec["new_tokens"] + 2)
    hf = sum(p.numel() for p in peer.parameters())
    assert abs(hf - ours) / ours < peers.PARAM_TOLERANCE

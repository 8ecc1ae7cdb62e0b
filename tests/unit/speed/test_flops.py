"""Model FLOPs for MFU (src/speed/flops.py), on a case computed by hand (nothing timed)."""
from src.speed.flops import forward_flops, train_flops


def test_mfu_formula_on_a_hand_computed_case():
    # encdec, 1 layer, d=2, f=4, V=10, S=3, T=2, batch 1:
    # encoder per token: 2·4·4 + 2·2·2·4 + 2·2·2·3 = 32+32+24 = 88, × 3 tokens = 264
    # decoder per token: 32 + 32 + 2·2·2·2 (self, 2 keys) + 2·2·4 (cross q,out) + 2·2·2·3 (cross scores)
    #   = 32+32+16+16+24 = 120, × 2 tokens = 240; cross k,v per source token 2·2·4 = 16, × 3 = 48
    # LM head: 2 · 2·2·10 = 80.  Total 264 + 240 + 48 + 80 = 632
    assert forward_flops("encdec", 2, 4, 1, 10, 1, 3, 2) == 632
    assert train_flops("encdec", 2, 4, 1, 10, 5, 3, 2) == 3 * 5 * 632
    assert forward_flops("rnn_attn", 2, 4, 1, 10, 1, 3, 2) is None

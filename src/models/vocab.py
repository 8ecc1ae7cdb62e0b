"""Special token ids shared by every tokenizer and model: the tokenizer reserves them first, in this order."""
PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>", "<mask>"]

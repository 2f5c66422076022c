"""The protocol names, in one place for the stages and their commands (stdlib only, so the CLI
modules can offer them as choices without importing a stage).

- Split protocols (``[split].protocol`` of fuse): ``cold-item`` splits the items 70/15/15 and
  builds pairs within each part, so test items are never seen in training; ``pair`` is the
  thesis's random split of the pairs (items shared between parts); ``cold-item-time`` makes the
  newest items (by first rating) the cold ones (validation, then test, newest last) and trains
  only on ratings given before the first of them was rated (the cut).
- Evaluation protocols (``cinefuse evaluate --protocol``): ``cold-item`` ranks the split's unseen
  test items; ``thesis`` ranks every rated item (training items included; for comparison only).
"""

SPLIT_PROTOCOLS = ("cold-item", "cold-item-time", "pair")
EVAL_PROTOCOLS = ("cold-item", "thesis")

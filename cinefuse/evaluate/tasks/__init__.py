"""Evaluation tasks: what is a query, what are its candidates, how a model's embeddings (and
prior) rank them, how the lists are scored. Each task is one file implementing
:class:`~cinefuse.evaluate.tasks.base.Task`; ``TASKS`` names them."""

from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM
from cinefuse.evaluate.tasks.user_to_item import USER_TO_ITEM

TASKS = {ITEM_TO_ITEM.name: ITEM_TO_ITEM, USER_TO_ITEM.name: USER_TO_ITEM}

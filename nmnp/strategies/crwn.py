"""``crwn``: the paper's model, a learned context and strength per task.

This is :class:`nmnp.model.ModulatedNetwork` itself; the subclass only adds the strategy
name and the shared-storage figures every strategy reports, so it can stand in a comparison
table. Nothing about the computation differs.
"""

from __future__ import annotations

from ..model import ModulatedNetwork


class CRWN(ModulatedNetwork):
    """The configurable random weight network (see :class:`nmnp.model.ModulatedNetwork`).

    Storage: ``params_per_task`` = n_units + 1 (7,841 for FlyNet), ``bytes_per_task`` =
    that many floats; nothing learned is shared between tasks.
    """

    name = "crwn"
    shared_params = 0
    shared_bytes = 0

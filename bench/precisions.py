"""The precisions a scenario may ask for, in the order tables and charts list them (one definition)."""

from typing import Literal

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dyn")
Precision = Literal[PRECISIONS]

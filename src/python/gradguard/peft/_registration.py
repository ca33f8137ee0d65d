"""Make out-of-tree adapters known to the stock, pip-installed PEFT (no fork, no edits to PEFT's files).

PEFT dispatches everything on ``config.peft_type``:
  * ``get_peft_model`` -> ``PEFT_TYPE_TO_TUNER_MAPPING[peft_type]`` builds the tuner (our ``*Model``);
  * ``PeftConfig.from_pretrained`` / ``PeftModel.from_pretrained`` read ``"peft_type"`` from
    adapter_config.json and look the config class up in ``PEFT_TYPE_TO_CONFIG_MAPPING``;
  * ``save_pretrained`` / ``load_adapter`` find the tuner class (state-dict hooks) in ``PEFT_TYPE_TO_TUNER_MAPPING``;
  * ``PEFT_TYPE_TO_PREFIX_MAPPING`` gives the parameter-name prefix used when injecting from a state dict
    (``key.rsplit("." + prefix)``) and when filtering missing keys in ``load_adapter``.
``peft.utils.register_peft_method`` fills those mappings, but refuses names that are not members of the
``PeftType`` enum, so the enum has to be extended first (``extend_peft_type``).
"""

from __future__ import annotations

import enum

from peft.utils.peft_types import PeftType, register_peft_method


def extend_peft_type(name: str, value: str | None = None) -> PeftType:
    """Add ``name = value`` to ``peft.utils.peft_types.PeftType`` at runtime; return the member.

    Idempotent: an existing member of that name is returned unchanged (re-import / ``importlib.reload``).
    After this, ``PeftType.NAME``, ``PeftType("VALUE")``, ``PeftType["NAME"]``, ``list(PeftType)``,
    ``"VALUE" in list(PeftType)`` and ``PeftType.NAME == "VALUE"`` all work like for built-in members.
    """
    return add_enum_member(PeftType, name, name if value is None else value)


def add_enum_member(enum_cls: type[enum.Enum], name: str, value, *, use_proto: bool = True) -> enum.Enum:
    """Add a member to an existing (non-Flag) Enum class, keeping all of its internal maps consistent."""
    existing = enum_cls._member_map_.get(name)
    if existing is not None:
        if existing.value != value:
            raise ValueError(f"{enum_cls.__name__}.{name} already exists with value {existing.value!r}, not {value!r}")
        return existing
    if value in enum_cls._value2member_map_:
        raise ValueError(f"{enum_cls.__name__} already has a member with value {value!r}")

    proto = getattr(enum, "_proto_member", None) if use_proto else None
    if proto is not None:
        # Python 3.11-3.13: reuse enum's own class-construction step. While a class body is turned into an Enum,
        # every member is a `_proto_member` placeholder in the class namespace whose `__set_name__` makes the real
        # member: it builds the (str-mixin) instance, sets _name_/_value_/__objclass__/_sort_order_, appends to
        # _member_names_ (iteration, len, list(PeftType)), fills _member_map_ (PeftType.X, PeftType["X"],
        # __members__) and _value2member_map_ (PeftType("X")), and binds the class attribute.
        # `type.__setattr__` bypasses EnumType.__setattr__ (which only forbids re-binding existing members);
        # `__set_name__` deletes the placeholder again before binding the member.
        placeholder = proto(value)
        type.__setattr__(enum_cls, name, placeholder)
        placeholder.__set_name__(enum_cls, name)
    else:  # fallback without the private helper: the same steps by hand
        member_type = enum_cls._member_type_
        member = object.__new__(enum_cls) if member_type is object else member_type.__new__(enum_cls, value)
        member._name_, member._value_, member.__objclass__ = name, value, enum_cls
        member._sort_order_ = len(enum_cls._member_names_)
        enum_cls._member_names_.append(name)
        enum_cls._member_map_[name] = member
        enum_cls._value2member_map_[value] = member
        type.__setattr__(enum_cls, name, member)
    return enum_cls._member_map_[name]


def register_adapter(*, name: str, config_cls, model_cls, prefix: str) -> PeftType:
    """Idempotently register a PEFT method (``name`` lower case, e.g. ``"my_lora"`` -> ``PeftType.MY_LORA``).

    ``register_peft_method`` raises ``KeyError`` if the type is already registered, so on a re-import or reload we
    first drop our own previous entries and register again; the mappings then point at the *current* class
    objects (a reload creates new ones). Entries of other methods are never touched.
    """
    from peft.mapping import (  # the very dicts register_peft_method writes to
        PEFT_TYPE_TO_CONFIG_MAPPING,
        PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
        PEFT_TYPE_TO_PREFIX_MAPPING,
        PEFT_TYPE_TO_TUNER_MAPPING,
    )

    peft_type = extend_peft_type(name.upper())
    for mapping in (
        PEFT_TYPE_TO_CONFIG_MAPPING,
        PEFT_TYPE_TO_TUNER_MAPPING,
        PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
        PEFT_TYPE_TO_PREFIX_MAPPING,
    ):
        mapping.pop(peft_type, None)
    # Not mixed-compatible: PeftMixedModel hard-codes the tuner classes it can combine.
    register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=prefix)
    return peft_type

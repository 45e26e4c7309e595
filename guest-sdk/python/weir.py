"""Write weir operators in Python.

An operator is a subclass of `Operator`: `open` gets the manifest's config (decoded from JSON),
`process` sees one record at a time (the SDK unpacks the batch the host passes in one call),
records are emitted through the `Context`, and keyed state lives in `ValueState` and `MapState`
handles that the host stores per key group. `export(MyOperator)` in the app module turns the
class into the component's `weir:operator/handler` export; build with componentize-py (see
README.md beside this file).

    import weir

    class Count(weir.Operator):
        def open(self, ctx, config):
            self.counts = weir.ValueState("count", weir.U64)

        def process(self, ctx, record):
            n = (self.counts.get(record.key) or 0) + 1
            self.counts.set(record.key, n)
            ctx.emit(record.key, b"%s %d" % (record.key, n))

    Handler = weir.export(Count)

An operator with private state (`snapshot`/`restore`) is exported with `export_stateful`. One
whose state encoding changes between versions of its component declares the version of each
state it writes (`Operator.state_versions`), converts values an older version wrote
(`Operator.migrate`) and is exported with `export_migrating`. The host tags what it stores with
the version that wrote it; after a swap (or a restore from an older savepoint) it hands each
older value to `migrate` the first time its key is read or written, stores the result at the new
version and drops the old value. `migrate` runs in an instance of its own, never opened and never
the one processing records, so it must be a pure conversion: no state calls, no emits.
"""

import json
import struct
import traceback

_HEADER = struct.Struct("<BII")
_TS = struct.Struct("<q")
_LEN = struct.Struct("<I")
_ABSENT = 0xFFFFFFFF
_FLUSH_BYTES = 64 * 1024


class Error(Exception):
    """An error that fails the job with its message (any other exception does too, with its
    type and traceback)."""


class StateError(Error):
    """A state call the host refused (the key is outside this subtask's key groups, or the
    name or key is not acceptable)."""


class Record:
    """One record: `key` and `value` are bytes, `timestamp` is milliseconds or None."""

    __slots__ = ("key", "value", "timestamp")

    def __init__(self, key, value, timestamp=None):
        self.key = _bytes(key)
        self.value = _bytes(value)
        self.timestamp = timestamp

    def key_str(self):
        return self.key.decode("utf-8")

    def value_str(self):
        return self.value.decode("utf-8")

    def value_json(self):
        return json.loads(self.value)

    def __repr__(self):
        return "Record(%r, %r, %r)" % (self.key, self.value, self.timestamp)


def _bytes(x):
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        return x.encode("utf-8")
    raise TypeError("keys and values are bytes or str, not %s" % type(x).__name__)


def decode_batch(batch):
    """The records of a batch in the flat format (see wit/operator.wit)."""
    records = []
    pos, end = 0, len(batch)
    view = memoryview(batch)
    while pos < end:
        if end - pos < 9:
            raise Error("malformed batch at byte %d: truncated record header" % pos)
        flags, klen, vlen = _HEADER.unpack_from(batch, pos)
        if flags & ~1:
            raise Error("malformed batch at byte %d: unknown flag bits" % pos)
        at = pos + 9
        ts = None
        if flags & 1:
            if end - at < 8:
                raise Error("malformed batch at byte %d: truncated timestamp" % pos)
            (ts,) = _TS.unpack_from(batch, at)
            at += 8
        if at + klen + vlen > end:
            raise Error("malformed batch at byte %d: key or value runs past the end" % pos)
        key = bytes(view[at : at + klen])
        value = bytes(view[at + klen : at + klen + vlen])
        records.append(Record(key, value, ts))
        pos = at + klen + vlen
    return records


def encode_record(buf, key, value, timestamp=None):
    """Appends one record to `buf` (a bytearray) in the flat format."""
    if timestamp is None:
        buf += _HEADER.pack(0, len(key), len(value))
    else:
        buf += _HEADER.pack(1, len(key), len(value))
        buf += _TS.pack(timestamp)
    buf += key
    buf += value


class Context:
    """Where an operator emits records: the main output and named side outputs."""

    def __init__(self, host):
        self._host = host
        self._main = bytearray()
        self._side = {}

    def emit(self, key, value, timestamp=None):
        """Emits a record to the main output (`key` and `value` are bytes or str)."""
        encode_record(self._main, _bytes(key), _bytes(value), timestamp)
        if len(self._main) >= _FLUSH_BYTES:
            self._flush_one(None, self._main)

    def emit_record(self, record):
        """Emits a record unchanged (keeping its timestamp)."""
        self.emit(record.key, record.value, record.timestamp)

    def emit_json(self, key, value):
        """Emits a record whose value is `value` encoded as JSON."""
        self.emit(key, json.dumps(value, separators=(",", ":")))

    def emit_to(self, output, key, value, timestamp=None):
        """Emits a record to the side output `output` (connected as `uid.output`)."""
        buf = self._side.setdefault(output, bytearray())
        encode_record(buf, _bytes(key), _bytes(value), timestamp)
        if len(buf) >= _FLUSH_BYTES:
            self._flush_one(output, buf)

    def _flush_one(self, output, buf):
        if buf:
            self._host.emit(output, bytes(buf))
            del buf[:]

    def flush(self):
        self._flush_one(None, self._main)
        for name, buf in self._side.items():
            self._flush_one(name, buf)

    def attempt(self):
        """How many times the job has restarted before this run of it: 0 on its first."""
        return self._host.attempt()


# Value codecs for state: how a Python value is stored as bytes.


class Codec:
    def __init__(self, encode, decode):
        self.encode = encode
        self.decode = decode


def _varint(n):
    if n < 0 or n >= 1 << 64:
        raise Error("%d does not fit in a u64" % n)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _unvarint(b):
    n, shift = 0, 0
    for i, byte in enumerate(b):
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            if i != len(b) - 1:
                raise Error("a u64 state value has trailing bytes")
            return n
        shift += 7
    raise Error("a u64 state value is truncated")


BYTES = Codec(bytes, bytes)
"""Values stored as they are (bytes)."""
STR = Codec(lambda s: s.encode("utf-8"), lambda b: b.decode("utf-8"))
"""Text, as UTF-8."""
U64 = Codec(_varint, _unvarint)
"""Unsigned integers, as the Rust SDK's `ValueState<u64>` stores them (a LEB128 varint), so
that state moves between languages."""
JSON = Codec(
    lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"), lambda b: json.loads(b)
)
"""Any JSON value."""


def _lengths(items):
    out = bytearray()
    for item in items:
        if item is None:
            out += _LEN.pack(_ABSENT)
        else:
            out += _LEN.pack(len(item))
            out += item
    return bytes(out)


def _unlengths(buf):
    items, pos = [], 0
    while pos < len(buf):
        (n,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if n == _ABSENT:
            items.append(None)
        else:
            items.append(bytes(buf[pos : pos + n]))
            pos += n
    return items


class ValueState:
    """One value per key under a state name, stored by the host; `codec` says how values are
    encoded (BYTES by default)."""

    def __init__(self, name, codec=BYTES):
        self.name = name
        self.codec = codec

    def get(self, key):
        raw = _host().value_get(self.name, _bytes(key))
        return None if raw is None else self.codec.decode(raw)

    def set(self, key, value):
        _host().value_set(self.name, _bytes(key), self.codec.encode(value))

    def clear(self, key):
        _host().value_clear(self.name, _bytes(key))

    def get_many(self, keys):
        """The values of many keys (None where unset), in one host call."""
        raw = _host().value_get_many(self.name, _lengths(_bytes(k) for k in keys))
        return [None if v is None else self.codec.decode(v) for v in _unlengths(raw)]

    def set_many(self, entries):
        """Sets (value) or clears (None) many keys, in one host call; `entries` holds
        (key, value) pairs."""
        flat = []
        for key, value in entries:
            flat.append(_bytes(key))
            flat.append(None if value is None else self.codec.encode(value))
        _host().value_set_many(self.name, _lengths(flat))


class MapState:
    """A map per key under a state name; map keys and values are encoded by their codecs."""

    def __init__(self, name, key_codec=BYTES, value_codec=BYTES):
        self.name = name
        self.key_codec = key_codec
        self.value_codec = value_codec

    def get(self, key, map_key):
        raw = _host().map_get(self.name, _bytes(key), self.key_codec.encode(map_key))
        return None if raw is None else self.value_codec.decode(raw)

    def put(self, key, map_key, value):
        _host().map_put(
            self.name, _bytes(key), self.key_codec.encode(map_key), self.value_codec.encode(value)
        )

    def remove(self, key, map_key):
        _host().map_remove(self.name, _bytes(key), self.key_codec.encode(map_key))

    def entries(self, key):
        """All entries of `key`'s map, ordered by encoded map key."""
        return [
            (self.key_codec.decode(k), self.value_codec.decode(v))
            for k, v in _host().map_entries(self.name, _bytes(key))
        ]

    def clear(self, key):
        _host().map_clear(self.name, _bytes(key))


def log(level, message):
    """Logs through the host ("trace", "debug", "info", "warn" or "error")."""
    _host().log(level, str(message))


class Operator:
    """Subclass this. `open(ctx, config)` gets the manifest's config table as a dict;
    `process(ctx, record)` is called per record; override `process_batch(ctx, records)` to touch
    state once per batch (`get_many`/`set_many`); `close(ctx)` is called at end of input."""

    def open(self, ctx, config):
        pass

    def process(self, ctx, record):
        raise NotImplementedError("an operator implements process")

    def process_batch(self, ctx, records):
        for record in records:
            self.process(ctx, record)

    def close(self, ctx):
        pass

    def snapshot(self):
        """The operator's private state at a checkpoint (bytes; empty: none). Exported by
        `export_stateful`."""
        return b""

    def restore(self, state):
        """After a restore, called after `open` with each private state (bytes) this subtask
        takes over from `snapshot`."""

    @staticmethod
    def state_versions():
        """The version of each state's encoding this operator writes, as (state name, version)
        pairs. A state not listed is at version 1, as is every state of an operator that lists
        none. Raise a state's version when a new version of the operator encodes it
        differently, and convert older values in `migrate`. Exported by `export_migrating`."""
        return []

    @staticmethod
    def migrate(state, from_version, value):
        """`value` (bytes), which version `from_version` of state `state`'s encoding wrote,
        converted to the encoding `state_versions` declares (bytes; for a map state, one
        entry's value per call). The host calls it the first time a key whose value an older
        version wrote is used, in an instance of its own that is never opened: a pure
        conversion, with no state calls and no emits. An exception fails the call that used the
        value; in the first run after a swap, that rolls the operator back to its previous
        component."""
        raise Error(
            "state `%s` holds values of version %d, but the operator does not implement migrate"
            % (state, from_version)
        )


# The host the SDK talks to: the component's imports, or a test double (see weir_testing).
_current_host = None


def _host():
    if _current_host is None:
        raise Error("the operator is not running under a host")
    return _current_host


def set_host(host):
    """Installs the host the SDK calls (the component's imports, or a test double)."""
    global _current_host
    _current_host = host


def _failure(e):
    if isinstance(e, Error):
        return str(e)
    return "%s: %s\n%s" % (type(e).__name__, e, "".join(traceback.format_tb(e.__traceback__)))


class Runtime:
    """One operator instance and its context, driven by the handler's calls."""

    def __init__(self, cls, host):
        self.cls = cls
        self.host = host
        self.op = None
        self.ctx = None

    def open(self, config):
        set_host(self.host)
        self.ctx = Context(self.host)
        self.op = self.cls()
        text = config.strip() or "{}"
        try:
            parsed = json.loads(text)
        except ValueError as e:
            raise Error("invalid operator config: %s" % e)
        self.op.open(self.ctx, parsed)
        self.ctx.flush()

    def process(self, batch):
        if self.op is None:
            raise Error("operator called before open")
        self.op.process_batch(self.ctx, decode_batch(batch))
        self.ctx.flush()

    def close(self):
        if self.op is None:
            raise Error("operator called before open")
        self.op.close(self.ctx)
        self.ctx.flush()

    def snapshot(self):
        if self.op is None:
            raise Error("operator called before open")
        return bytes(self.op.snapshot())

    def restore(self, state):
        if self.op is None:
            raise Error("operator called before open")
        self.op.restore(bytes(state))


class _ComponentHost:
    """The component's imports, with state errors turned into `StateError`."""

    def __init__(self):
        from wit_world.imports import context, emit, log, state

        self._emit = emit.emit
        self._state = state
        self._log = log
        self._context = context

    def emit(self, output, batch):
        self._emit(output, batch)

    def _call(self, f, *args):
        from componentize_py_types import Err

        try:
            return f(*args)
        except Err as e:
            raise StateError(getattr(e.value, "value", str(e.value)))

    def value_get(self, name, key):
        return self._call(self._state.value_get, name, key)

    def value_set(self, name, key, value):
        self._call(self._state.value_set, name, key, value)

    def value_clear(self, name, key):
        self._call(self._state.value_clear, name, key)

    def value_get_many(self, name, keys):
        return self._call(self._state.value_get_many, name, keys)

    def value_set_many(self, name, entries):
        self._call(self._state.value_set_many, name, entries)

    def map_get(self, name, key, map_key):
        return self._call(self._state.map_get, name, key, map_key)

    def map_put(self, name, key, map_key, value):
        self._call(self._state.map_put, name, key, map_key, value)

    def map_remove(self, name, key, map_key):
        self._call(self._state.map_remove, name, key, map_key)

    def map_entries(self, name, key):
        return self._call(self._state.map_entries, name, key)

    def map_clear(self, name, key):
        self._call(self._state.map_clear, name, key)

    def log(self, level, message):
        self._log.log(self._log.Level[level.upper()], message)

    def attempt(self):
        return self._context.attempt()


def _exports(cls):
    from componentize_py_types import Err
    from wit_world import exports

    runtime = Runtime(cls, _ComponentHost())

    def guarded(f, *args):
        try:
            return f(*args)
        except Err:
            raise
        except BaseException as e:
            # The job fails with this message, tagged by the host with the operator's name.
            raise Err(_failure(e))

    class Handler(exports.Handler):
        def open(self, config):
            guarded(runtime.open, config)

        def process(self, batch):
            guarded(runtime.process, batch)

        def close(self):
            guarded(runtime.close)

    def hooks():
        class CheckpointHooks(exports.CheckpointHooks):
            def snapshot(self):
                return guarded(runtime.snapshot)

            def restore(self, state):
                guarded(runtime.restore, state)

        return CheckpointHooks

    return Handler, hooks


def export(cls):
    """The component's `handler` export for the operator class `cls`. In the app module:

        Handler = weir.export(MyOperator)
    """
    return _exports(cls)[0]


def export_stateful(cls):
    """The `handler` and `checkpoint-hooks` exports for an operator class whose `snapshot` and
    `restore` keep private state in checkpoints (built for the `stateful-operator` world). In
    the app module:

        Handler, CheckpointHooks = weir.export_stateful(MyOperator)
    """
    handler, hooks = _exports(cls)
    return handler, hooks()


def export_migrating(cls):
    """The `handler`, `checkpoint-hooks` and `migration` exports for an operator class whose
    state encoding evolves: its `state_versions` and `migrate` are exported too (built for the
    `migrating-operator` world). In the app module:

        Handler, CheckpointHooks, Migration = weir.export_migrating(MyOperator)
    """
    from wit_world import exports

    handler, hooks = _exports(cls)

    class Migration(exports.Migration):
        def state_versions(self):
            # As tuples, the WIT tuple's Python form, whatever pairs the class lists.
            return [(name, version) for name, version in cls.state_versions()]

        def migrate(self, state, from_version, value):
            return _guard(lambda: bytes(cls.migrate(state, from_version, bytes(value))))

    return handler, hooks(), Migration


# Window functions (wit/window.wit): what a `[windows.X]` operator runs on its windows. The host
# keeps the windows and decides when they fire; these only compute. Calls carry many windows
# at once in flat buffers of length-prefixed items (u32 LE length, 0xFFFFFFFF for none).


def _items(buf):
    """The length-prefixed items of `buf` (None for an absent one)."""
    out, pos, end = [], 0, len(buf)
    while pos < end:
        if end - pos < 4:
            raise Error("malformed window batch: a length is cut off")
        (n,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if n == _ABSENT:
            out.append(None)
            continue
        if pos + n > end:
            raise Error("malformed window batch: an item runs past the end")
        out.append(bytes(buf[pos : pos + n]))
        pos += n
    return out


def _push_item(out, item):
    if item is None:
        out += _LEN.pack(_ABSENT)
    else:
        item = _bytes(item)
        out += _LEN.pack(len(item))
        out += item


def _paired(records, pairs, groups):
    """(group, record) for each (record index, group index) pair, in order."""
    decoded = decode_batch(records)
    if len(pairs) % 2:
        raise Error("malformed window batch: an odd number of pair items")
    for i in range(0, len(pairs), 2):
        r, g = pairs[i], pairs[i + 1]
        if r >= len(decoded) or g >= groups:
            raise Error("malformed window batch: pair (%d, %d) is out of range" % (r, g))
        yield g, decoded[r]


def _window_at(buf, pos):
    """A window's key and bounds at `pos`, as the host passes windows that fire; and where
    what follows them starts."""
    (n,) = _LEN.unpack_from(buf, pos)
    key = bytes(buf[pos + 4 : pos + 4 + n])
    pos += 4 + n
    start, end = struct.unpack_from("<qq", buf, pos)
    return key, Window(start, end), pos + 16


class Window:
    """A window: from `start` (included) to `end` (excluded), in milliseconds."""

    __slots__ = ("start", "end")

    def __init__(self, start, end):
        self.start, self.end = start, end

    def __repr__(self):
        return "Window(%d, %d)" % (self.start, self.end)


class Aggregate:
    """Folds a window's records into an accumulator, as Flink's `AggregateFunction`. The host
    keeps accumulators as bytes: `encode` and `decode` (JSON by default) convert them."""

    def open(self, config):
        pass

    def create(self):
        raise NotImplementedError("an Aggregate implements create()")

    def add(self, acc, record):
        """Returns the accumulator with `record` added."""
        raise NotImplementedError("an Aggregate implements add(acc, record)")

    def merge(self, acc, other):
        """Returns the two accumulators as one (session windows that merge)."""
        raise Error("this aggregate function does not merge accumulators (session windows need merge)")

    def result(self, key, window, acc):
        """The value (bytes or str) the window emits when it fires."""
        raise NotImplementedError("an Aggregate implements result(key, window, acc)")

    def encode(self, acc):
        return json.dumps(acc).encode("utf-8")

    def decode(self, data):
        return json.loads(data)


class Reduce:
    """Folds a window's records into one value of their own type, as Flink's `ReduceFunction`:
    the window emits its value as it stands."""

    def open(self, config):
        pass

    def reduce(self, value, record):
        """`value` (bytes) with `record` folded in: bytes or str."""
        raise NotImplementedError("a Reduce implements reduce(value, record)")


class WindowOutput:
    """What a `ProcessWindow` emits for one window (a record without a timestamp gets the
    window's end - 1)."""

    def __init__(self):
        self.batch = bytearray()

    def emit(self, key, value, timestamp=None):
        encode_record(self.batch, _bytes(key), _bytes(value), timestamp)


class ProcessWindow:
    """Computes a window's output from all its records at once, as Flink's
    `ProcessWindowFunction`."""

    def open(self, config):
        pass

    def process(self, key, window, records, out):
        raise NotImplementedError("a ProcessWindow implements process(key, window, records, out)")


class WindowRuntime:
    """The glue between the window exports and a function (plain Python, testable natively)."""

    def __init__(self, cls):
        self.cls = cls
        self.fn = None

    def open(self, config):
        fn = self.cls()
        fn.open(json.loads(config) if config.strip() else {})
        self.fn = fn

    def _fn(self):
        if self.fn is None:
            raise Error("window function called before open")
        return self.fn

    def add(self, accumulators, records, pairs):
        fn = self._fn()
        accs = [fn.create() if a is None else fn.decode(a) for a in _items(accumulators)]
        for g, r in _paired(records, pairs, len(accs)):
            accs[g] = fn.add(accs[g], r)
        out = bytearray()
        for a in accs:
            _push_item(out, fn.encode(a))
        return bytes(out)

    def merge(self, sets):
        fn = self._fn()
        out, pos, end = bytearray(), 0, len(sets)
        while pos < end:
            (n,) = _LEN.unpack_from(sets, pos)
            pos += 4
            acc = None
            for _ in range(n):
                (m,) = _LEN.unpack_from(sets, pos)
                pos += 4
                other = fn.decode(bytes(sets[pos : pos + m]))
                pos += m
                acc = other if acc is None else fn.merge(acc, other)
            _push_item(out, fn.encode(fn.create() if acc is None else acc))
        return bytes(out)

    def get_result(self, windows):
        fn = self._fn()
        out, pos = bytearray(), 0
        while pos < len(windows):
            key, window, pos = _window_at(windows, pos)
            (m,) = _LEN.unpack_from(windows, pos)
            acc = fn.decode(bytes(windows[pos + 4 : pos + 4 + m]))
            pos += 4 + m
            _push_item(out, fn.result(key, window, acc))
        return bytes(out)

    def reduce(self, values, records, pairs):
        fn = self._fn()
        vals = _items(values)
        for g, r in _paired(records, pairs, len(vals)):
            vals[g] = r.value if vals[g] is None else _bytes(fn.reduce(vals[g], r))
        out = bytearray()
        for v in vals:
            if v is None:
                raise Error("malformed window batch: a group with no value and no records")
            _push_item(out, v)
        return bytes(out)

    def process(self, windows):
        fn = self._fn()
        out, pos = bytearray(), 0
        while pos < len(windows):
            key, window, pos = _window_at(windows, pos)
            (count,) = _LEN.unpack_from(windows, pos)
            pos += 4
            # The records run to the next window's start: read exactly `count` of them.
            at = pos
            for _ in range(count):
                flags, klen, vlen = _HEADER.unpack_from(windows, at)
                at += 9 + (8 if flags & 1 else 0) + klen + vlen
            records = decode_batch(bytes(windows[pos:at]))
            pos = at
            emitted = WindowOutput()
            fn.process(key, window, records, emitted)
            _push_item(out, bytes(emitted.batch))
        return bytes(out)


def _guard(f, *args):
    from componentize_py_types import Err

    try:
        return f(*args)
    except Err:
        raise
    except BaseException as e:
        raise Err(_failure(e))


def export_aggregate(cls):
    """The `aggregate-handler` export of the `window-aggregate` world for an `Aggregate`
    subclass: `AggregateHandler = weir.export_aggregate(SumCount)`."""
    from wit_world import exports

    runtime = WindowRuntime(cls)

    class AggregateHandler(exports.AggregateHandler):
        def open(self, config):
            _guard(runtime.open, config)

        def add(self, accumulators, records, pairs):
            return _guard(runtime.add, accumulators, records, pairs)

        def merge(self, sets):
            return _guard(runtime.merge, sets)

        def get_result(self, windows):
            return _guard(runtime.get_result, windows)

    return AggregateHandler


def export_reduce(cls):
    """The `reduce-handler` export of the `window-reduce` world for a `Reduce` subclass:
    `ReduceHandler = weir.export_reduce(Max)`."""
    from wit_world import exports

    runtime = WindowRuntime(cls)

    class ReduceHandler(exports.ReduceHandler):
        def open(self, config):
            _guard(runtime.open, config)

        def reduce(self, values, records, pairs):
            return _guard(runtime.reduce, values, records, pairs)

    return ReduceHandler


def export_process_window(cls):
    """The `process-handler` export of the `window-process` world for a `ProcessWindow`
    subclass: `ProcessHandler = weir.export_process_window(Top)`."""
    from wit_world import exports

    runtime = WindowRuntime(cls)

    class ProcessHandler(exports.ProcessHandler):
        def open(self, config):
            _guard(runtime.open, config)

        def process(self, windows):
            return _guard(runtime.process, windows)

    return ProcessHandler


# Sources (wit/source.wit): records from outside, or generated, with a replayable position the
# host checkpoints.


class Source:
    """A source subtask: emits records when polled, and can say and restore where it is.

    Positions must be monotonic (a later position never re-emits what an earlier one covered)
    and exact: after `restore(p)`, the source emits the first record not emitted before `p` was
    taken.
    """

    def open(self, ctx, config, subtask, parallelism):
        """Called once: `config` is the source's `config` table (a dict); this is subtask
        `subtask` of `parallelism`."""

    def poll(self, ctx, max_records):
        """Emits up to `max_records` records through `ctx`; returns False once the source has
        ended (the host polls no more), True while more may come."""
        raise NotImplementedError

    def position(self):
        """The position after the last record emitted (bytes)."""
        return b""

    def restore(self, position):
        """Continues from a position `position()` returned (called after open, before polls)."""


class _SourceHost:
    """A source component's imports: emit, log and context (sources hold no keyed state)."""

    def __init__(self):
        from wit_world.imports import context, emit, log

        self._emit = emit.emit
        self._log = log
        self._context = context

    def emit(self, output, batch):
        self._emit(output, batch)

    def log(self, level, message):
        self._log.log(self._log.Level[level.upper()], message)

    def attempt(self):
        return self._context.attempt()


def export_source(cls):
    """The `source-handler` export of the `source` world for a `Source` subclass:
    `SourceHandler = weir.export_source(Numbers)`."""
    from wit_world import exports
    from wit_world.exports import source_handler

    # The imports are bound now, while the component is built (as `export` does): a module
    # first imported at run time is not in the component.
    host = _SourceHost()
    subtask = {}

    def started():
        if "source" not in subtask:
            raise Error("source called before open")
        return subtask["source"], subtask["ctx"]

    def open_(config, index, parallelism):
        set_host(host)
        ctx = Context(host)
        try:
            parsed = json.loads(config.strip() or "{}")
        except ValueError as e:
            raise Error("invalid source config: %s" % e)
        source = cls()
        source.open(ctx, parsed, index, parallelism)
        ctx.flush()
        subtask["source"], subtask["ctx"] = source, ctx

    def poll(max_records):
        source, ctx = started()
        more = source.poll(ctx, max_records)
        ctx.flush()
        return source_handler.PollStatus.MORE if more else source_handler.PollStatus.ENDED

    def restore(position):
        source, _ = started()
        source.restore(bytes(position))

    class SourceHandler(exports.SourceHandler):
        def open(self, config, index, parallelism):
            _guard(open_, config, index, parallelism)

        def poll(self, max_records):
            return _guard(poll, max_records)

        def position(self):
            # No error to return here: a failure traps, which fails the job too.
            source, _ = started()
            return bytes(source.position())

        def restore(self, position):
            _guard(restore, position)

    return SourceHandler

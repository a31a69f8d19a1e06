"""A Waku relay peer (11/WAKU2-RELAY) on py-libp2p, an independent implementation to test
our Rust relay against (crates/transport/tests/interop_py.rs drives it).

Install: scripts/setup-test-deps.sh (venv .venv-interop, libp2p==0.8.1 pinned).

    py_waku_peer.py --connect MA/p2p/ID --topic /waku/2/rs/15/N --content-topic CT
                    [--send TEXT] [--expect TEXT] [--timeout SECS]
                    [--store-query] [--store-serve N]

13/WAKU2-STORE v3 (`/vac/waku/store-query/3.0.0`), written here from the spec with a
hand-made protobuf codec (no generated code), as an independent store client and server:
--store-query asks the peer we connect to for the --topic/--content-topic history, 2 a
page, forward, following cursors, and prints `stored HASH TEXT` for each message whose
deterministic hash (computed here) matches its key, `stored-bad REASON` otherwise, then
`store-done STATUS MESSAGES PAGES`; --store-serve N makes N messages `py-stored-I` on
--topic/--content-topic and answers store queries from them (content and hash filters,
time range, both directions, cursors, page limit, status 400 for requests the spec
forbids), printing `store-served STATUS ENTRIES` per query, and waits for `stop`.

stdout, one line each: `ready PEERID`, `connected`, `sent MSGID` (per publish),
`recv MSGID CONTENT_TOPIC PAYLOAD_TEXT` (`recv-garbage MSGID HEX` for a non-WakuMessage),
then `done` or `fail REASON` (and on failure the router's view of its peers on stderr).
MSGID is the hex message id py-libp2p files the message under: SHA-256 of the message
bytes, Waku's relay message id (nwaku, js-waku, our Rust relay), which the Rust test
compares with its own.
stdin: `stop` ends the publishing of --send (every 0.5 s until then) and lets it finish.
Exit 0 only if the --expect payload arrived and, with --send, `stop` came.
PY_WAKU_PEER_LOG=FILE writes py-libp2p's debug log to FILE.

Stock py-libp2p 0.8.1 cannot be a Waku relay peer; four patches, applied here at run
time (never in site-packages), make it one. Switching 1, 2, 3 or the msg_id_constructor
off makes interop_py.rs fail; 4 and the rate limit matter only once gossip (IHAVE/IWANT)
or a busy topic come in, which two peers do not exercise (measured with more peers):
1. its gossipsub speaks only /meshsub/*: we make it speak /vac/waku/relay/2.0.0, by
   passing that protocol and by renaming the module's v1.1 id (the router checks peers'
   protocols against those module constants), or our peer and it never agree on one;
2. Pubsub.publish() always sets `from` and `seqno`, which Waku's StrictNoSign peers must
   reject: we build the RPC Message(data, topicIDs) ourselves and push it;
3. its equivocation check keys on from+seqno, both empty in anonymous messages, so it
   would forward one message ever and drop the rest as "equivocation": switched off
   (the seen-cache, keyed on the Waku message id, still drops duplicates);
4. its message cache (what IHAVE/IWANT gossip serves) keys on from+seqno too: we key it
   on the Waku relay message id, which is also what our peer asks for in IWANT.
Also: Pubsub(strict_signing=False, msg_id_constructor=<Waku relay message id>),
security /noise, muxer /yamux/1.0.0 (what our relay offers); py delivers its own
publishes to itself (we drop those by our instance id in `meta`, as the Rust relay
does); and its router silently stops forwarding above 10 msg/s per peer and topic, so
that limit is raised.
"""

import argparse
import hashlib
import os
import secrets
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import gossipsub, mcache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

WAKU_RELAY = TProtocol("/vac/waku/relay/2.0.0")
WAKU_STORE = TProtocol("/vac/waku/store-query/3.0.0")


def say(*words):
    print(*words, flush=True)


# --- 14/WAKU2-MESSAGE: a minimal protobuf codec (no protoc needed) -----------------------


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_waku(payload, content_topic, timestamp_ns, meta):
    """payload=1 bytes, content_topic=2 string, timestamp=10 sint64, meta=11 bytes."""
    ct = content_topic.encode()
    zigzag = (timestamp_ns << 1) ^ (timestamp_ns >> 63)
    return (
        b"\x0a" + _varint(len(payload)) + payload
        + b"\x12" + _varint(len(ct)) + ct
        + b"\x50" + _varint(zigzag)
        + b"\x5a" + _varint(len(meta)) + meta
    )


def decode_waku(data):
    """{field number: value} for varint and length-delimited fields; ValueError if bad."""
    return dict(decode_fields(data))


def decode_fields(data):
    """[(field number, value)] in order (repeated fields repeat) for varint and
    length-delimited fields; ValueError if bad."""
    fields, i = [], 0

    def varint():
        nonlocal i
        n = shift = 0
        while True:
            if i >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields.append((number, varint()))
        elif wire == 2:
            n = varint()
            if i + n > len(data):
                raise ValueError("truncated field")
            fields.append((number, data[i : i + n]))
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    return fields


def unzigzag(n):
    return (n >> 1) ^ -(n & 1)


def waku_hash(pubsub_topic, f):
    """14/WAKU2-MESSAGE deterministic hash of a decoded message (decode_waku's dict):
    sha256(pubsub_topic | payload | content_topic | meta | timestamp, 8 bytes BE)."""
    ts = unzigzag(f.get(10, 0))
    return hashlib.sha256(
        pubsub_topic.encode() + f.get(1, b"") + f.get(2, b"") + f.get(11, b"")
        + ts.to_bytes(8, "big", signed=True)
    ).digest()


# --- 13/WAKU2-STORE v3: field numbers from the spec ---------------------------------------


def _bytes_field(number, b):
    return _varint(number << 3 | 2) + _varint(len(b)) + b


def _varint_field(number, n):
    return _varint(number << 3) + _varint(n)


def encode_store_request(request_id, pubsub_topic, content_topics, include_data=True,
                         cursor=None, forward=True, limit=None, hashes=()):
    """StoreQueryRequest: request_id 1, include_data 2, pubsub_topic 10, content_topics
    11, time_start 12 / time_end 13 (sint64; unused here), message_hashes 20,
    pagination_cursor 51, pagination_forward 52, pagination_limit 53."""
    out = _bytes_field(1, request_id.encode())
    if include_data:
        out += _varint_field(2, 1)
    if pubsub_topic is not None:
        out += _bytes_field(10, pubsub_topic.encode())
    for ct in content_topics:
        out += _bytes_field(11, ct.encode())
    for h in hashes:
        out += _bytes_field(20, h)
    if cursor is not None:
        out += _bytes_field(51, cursor)
    if forward:
        out += _varint_field(52, 1)
    if limit is not None:
        out += _varint_field(53, limit)
    return out


def decode_store_request(data):
    r = {"request_id": "", "include_data": False, "pubsub_topic": None,
         "content_topics": [], "time_start": None, "time_end": None, "hashes": [],
         "cursor": None, "forward": False, "limit": None}
    for number, v in decode_fields(data):
        if number == 1:
            r["request_id"] = v.decode(errors="replace")
        elif number == 2:
            r["include_data"] = bool(v)
        elif number == 10:
            r["pubsub_topic"] = v.decode(errors="replace")
        elif number == 11:
            r["content_topics"].append(v.decode(errors="replace"))
        elif number == 12:
            r["time_start"] = unzigzag(v)
        elif number == 13:
            r["time_end"] = unzigzag(v)
        elif number == 20:
            r["hashes"].append(bytes(v))
        elif number == 51:
            r["cursor"] = bytes(v)
        elif number == 52:
            r["forward"] = bool(v)
        elif number == 53:
            r["limit"] = v
    return r


def encode_store_response(request_id, status, desc, entries, cursor):
    """StoreQueryResponse: request_id 1, status_code 10, status_desc 11, messages 20
    (WakuMessageKeyValue: message_hash 1, message 2, pubsub_topic 3), cursor 51."""
    out = _bytes_field(1, request_id.encode()) + _varint_field(10, status)
    out += _bytes_field(11, desc.encode())
    for h, msg, topic in entries:
        kv = _bytes_field(1, h)
        if msg is not None:
            kv += _bytes_field(2, msg) + _bytes_field(3, topic.encode())
        out += _bytes_field(20, kv)
    if cursor is not None:
        out += _bytes_field(51, cursor)
    return out


def decode_store_response(data):
    r = {"request_id": "", "status": None, "desc": "", "messages": [], "cursor": None}
    for number, v in decode_fields(data):
        if number == 1:
            r["request_id"] = v.decode(errors="replace")
        elif number == 10:
            r["status"] = v
        elif number == 11:
            r["desc"] = v.decode(errors="replace")
        elif number == 20:
            kv = dict(decode_fields(v))
            r["messages"].append(
                (kv.get(1), kv.get(2), kv[3].decode(errors="replace") if 3 in kv else None)
            )
        elif number == 51:
            r["cursor"] = bytes(v)
    return r


async def read_exactly(stream, n):
    buf = b""
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise ValueError("stream ended early")
        buf += chunk
    return buf


async def read_lp(stream, max_len):
    n = shift = 0
    for _ in range(5):
        b = (await read_exactly(stream, 1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if n > max_len:
                raise ValueError(f"length {n} over {max_len}")
            return await read_exactly(stream, n)
    raise ValueError("bad varint length")


class PyStore:
    """An in-memory store answering per the spec: entries sorted by (timestamp, hash)."""

    def __init__(self):
        self.entries = []  # (timestamp, hash, message bytes, pubsub topic, content topic)

    def add(self, pubsub_topic, data):
        f = decode_waku(data)
        self.entries.append(
            (unzigzag(f.get(10, 0)), waku_hash(pubsub_topic, f), data, pubsub_topic,
             f.get(2, b"").decode())
        )
        self.entries.sort(key=lambda e: (e[0], e[1]))

    def answer(self, r):
        content = r["pubsub_topic"] is not None or r["content_topics"] or \
            r["time_start"] is not None or r["time_end"] is not None
        if content and r["hashes"]:
            return 400, "content filter and hashes", [], None
        if (r["pubsub_topic"] is None) != (not r["content_topics"]):
            return 400, "pubsub_topic and content_topics go together", [], None

        def match(e):
            ts, h, _, topic, ct = e
            if r["hashes"]:
                return h in r["hashes"]
            return ((r["pubsub_topic"] is None or topic == r["pubsub_topic"])
                    and (not r["content_topics"] or ct in r["content_topics"])
                    and (r["time_start"] is None or ts >= r["time_start"])
                    and (r["time_end"] is None or ts < r["time_end"]))

        order = self.entries if r["forward"] else list(reversed(self.entries))
        if r["cursor"] is not None:
            at = [i for i, e in enumerate(order) if e[1] == r["cursor"]]
            if not at:
                return 400, "unknown cursor", [], None
            order = order[at[0] + 1:]
        found = [e for e in order if match(e)]
        limit = r["limit"] if r["limit"] and r["limit"] <= 100 else 100
        page, more = found[:limit], len(found) > limit
        cursor = page[-1][1] if more else None
        if not r["forward"]:
            page.reverse()
        out = [(h, data if r["include_data"] else None, topic) for _, h, data, topic, _ in page]
        return 200, "OK", out, cursor


async def query_store(host, peer_id, topic, content_topic):
    """Pages through the peer's store; prints the stored/store-done lines."""
    cursor, pages, n, status = None, 0, 0, None
    while True:
        req = encode_store_request(
            secrets.token_hex(8), topic, [content_topic], cursor=cursor, limit=2
        )
        stream = await host.new_stream(peer_id, [WAKU_STORE])
        await stream.write(_varint(len(req)) + req)
        res = decode_store_response(await read_lp(stream, 16 * 1024 * 1024))
        await stream.close()
        pages += 1
        status = res["status"]
        for h, msg, msg_topic in res["messages"]:
            if msg is None or msg_topic is None:
                say("stored-bad", "no data")
                continue
            f = decode_waku(msg)
            if waku_hash(msg_topic, f) != h:
                say("stored-bad", "hash mismatch")
                continue
            n += 1
            say("stored", h.hex(), f.get(1, b"").decode(errors="replace"))
        cursor = res["cursor"]
        if cursor is None or status != 200 or pages >= 50:
            break
    say("store-done", status, n, pages)


def waku_message_id(msg: rpc_pb2.Message) -> bytes:
    """The Waku relay message id: SHA-256 of the message bytes (the encoded WakuMessage),
    as nwaku and js-waku compute it; defined for any bytes, WakuMessage or not."""
    return hashlib.sha256(msg.data).digest()


# --- the patches (see the module doc) ----------------------------------------------------

gossipsub.PROTOCOL_ID_V11 = WAKU_RELAY  # 1: accepted by add_peer, treated as v1.1
mcache.default_msg_id_fn = waku_message_id  # 4: the message cache keys on the Waku id


def make_router():
    router = gossipsub.GossipSub(
        protocols=[WAKU_RELAY],  # 1: the only protocol we offer and accept
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        max_messages_per_topic_per_second=1000.0,  # at 10 it silently stops forwarding
    )
    router._check_equivocation = lambda msg: True  # 3: from+seqno are empty here
    return router


async def publish(pubsub, topic, data):
    """Returns the message id py-libp2p files the message under."""
    # 2: anonymous (StrictNoSign): no from, seqno, signature or key.
    msg = rpc_pb2.Message(data=data, topicIDs=[topic])
    await pubsub.push_msg(pubsub.my_id, msg)
    return pubsub.get_message_id(msg)


# --- the peer ----------------------------------------------------------------------------


async def read_stdin(state):
    """`stop` on stdin ends the publishing; EOF changes nothing."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buf = b""
    while chunk := await stream.receive_some():
        buf += chunk
        *lines, buf = buf.split(b"\n")
        if any(line.strip() == b"stop" for line in lines):
            state["stopped"].set()


def print_router_view(pubsub, router, topic):
    """What the router thinks of its peers, on stderr: to tell why a message did not go."""
    ids = lambda peers: [str(p) for p in peers]  # noqa: E731
    print(
        "py_waku_peer view:",
        f"streams={ {str(p): s.get_protocol() for p, s in pubsub.peers.items()} }",
        f"subscribed={ids(pubsub.peer_topics.get(topic, ()))}",
        f"mesh={ids(router.mesh.get(topic, ()))}",
        f"backoff={router.back_off.get(topic)}",
        f"queues={ {str(p): len(q) for p, q in pubsub.peer_queues.items()} }",
        file=sys.stderr,
        flush=True,
    )


async def run(args):
    key = create_new_key_pair()
    noise = NoiseTransport(key, noise_privkey=create_new_x25519_key_pair().private_key)
    host = new_host(key_pair=key, sec_opt={NOISE_ID: noise}, muxer_opt={YAMUX_ID: Yamux})
    router = make_router()
    pubsub = Pubsub(host, router, strict_signing=False, msg_id_constructor=waku_message_id)
    instance = secrets.token_bytes(16)  # our `meta`, to know our own messages
    state = {"got": trio.Event(), "stopped": trio.Event()}
    if args.send is None and args.store_serve is None:
        state["stopped"].set()
    store = PyStore()
    if args.store_serve is not None:
        now = time.time_ns()
        for i in range(args.store_serve):
            data = encode_waku(
                f"py-stored-{i}".encode(), args.content_topic,
                now - (args.store_serve - i) * 1_000_000, instance,
            )
            store.add(args.topic, data)

        async def serve_store(stream):
            try:
                r = decode_store_request(await read_lp(stream, 64 * 1024))
                status, desc, entries, cursor = store.answer(r)
                res = encode_store_response(r["request_id"], status, desc, entries, cursor)
                await stream.write(_varint(len(res)) + res)
                say("store-served", status, len(entries))
            except Exception as e:  # a bad request must not take the peer down
                say("store-served", "error", f"{type(e).__name__}: {e}")
            finally:
                await stream.close()

        host.set_stream_handler(WAKU_STORE, serve_store)

    async def receive(sub):
        async for msg in sub:
            mid = pubsub.get_message_id(msg).hex()  # the id py-libp2p filed it under
            try:
                f = decode_waku(msg.data)
            except ValueError:
                say("recv-garbage", mid, msg.data.hex())
                continue
            if f.get(11) == instance:
                continue  # our own publish, delivered to ourselves
            ct = f.get(2, b"").decode(errors="replace")
            text = f.get(1, b"").decode(errors="replace")
            say("recv", mid, ct, text)
            if text == args.expect:
                state["got"].set()

    async def send():
        while not state["stopped"].is_set():
            # A fresh timestamp each time: a new Waku message id, and within our relay's
            # 20 s skew window.
            now = time.time_ns()
            data = encode_waku(args.send.encode(), args.content_topic, now, instance)
            mid = await publish(pubsub, args.topic, data)
            say("sent", mid.hex())
            with trio.move_on_after(0.5):
                await state["stopped"].wait()

    async with (
        host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(router),
        trio.open_nursery() as nursery,
    ):
        await pubsub.wait_until_ready()
        say("ready", host.get_id().to_base58())
        connected = False
        with trio.move_on_after(args.timeout):
            try:
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(args.connect)))
                connected = True
            except Exception as e:
                say("fail", f"could not connect to {args.connect}: {e}")
                nursery.cancel_scope.cancel()
                return False
            say("connected")
            sub = await pubsub.subscribe(args.topic)
            nursery.start_soon(receive, sub)
            nursery.start_soon(read_stdin, state)
            if args.send is not None:
                nursery.start_soon(send)
            if args.store_query:
                peer = info_from_p2p_addr(multiaddr.Multiaddr(args.connect)).peer_id
                await query_store(host, peer, args.topic, args.content_topic)
            if args.expect is not None:
                await state["got"].wait()
            await state["stopped"].wait()
        ok = args.expect is None or state["got"].is_set()
        ok = ok and state["stopped"].is_set()
        if ok:
            say("done")
        else:
            missing = [] if connected else [f"could not connect to {args.connect}"]
            if args.expect is not None and not state["got"].is_set():
                missing.append(f"never received {args.expect!r}")
            if not state["stopped"].is_set():
                missing.append("no `stop` on stdin (the other side lacks our messages?)")
            say("fail", "; ".join(missing))
            print_router_view(pubsub, router, args.topic)
        nursery.cancel_scope.cancel()
        return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connect", required=True, help="our Rust peer's multiaddr with /p2p/")
    p.add_argument("--topic", required=True, help="pubsub topic, /waku/2/rs/CLUSTER/SHARD")
    p.add_argument("--content-topic", required=True)
    p.add_argument("--send", help="payload to publish every 0.5 s until `stop` on stdin")
    p.add_argument("--expect", help="payload that must arrive")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds, from `ready` on")
    p.add_argument("--store-query", action="store_true",
                   help="query the peer's 13/WAKU2-STORE for --topic/--content-topic")
    p.add_argument("--store-serve", type=int, metavar="N",
                   help="serve a store of N messages py-stored-I until `stop`")
    args = p.parse_args()
    if os.environ.get("PY_WAKU_PEER_LOG"):
        import logging

        logging.basicConfig(
            filename=os.environ["PY_WAKU_PEER_LOG"],
            level=logging.DEBUG,
            format="%(asctime)s %(name)s %(message)s",
        )
    ok = False
    try:
        ok = trio.run(run, args)
    except Exception as e:  # report it in the protocol too, then the traceback
        say("fail", f"{type(e).__name__}: {e}")
        raise
    # Skip the interpreter's teardown of py-libp2p's leftover threads and sockets.
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()

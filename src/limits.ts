/**
 * Every bound of the system in one place. Flows and adapters take these as defaults in their
 * options objects, so tests and users can tighten or relax them.
 */

/** Memory pages: block sizes and mmap offsets are multiples of this. */
export const PAGE_SIZE = 4096

// ---- tracker (UDP) ----
/** Largest datagram we send or accept. Replies are paginated to fit. */
export const MAX_DATAGRAM_BYTES = 16 * 1024
/** Bytes of a reply we allow for list items (the rest is envelope). */
export const MAX_REPLY_ITEMS_BYTES = MAX_DATAGRAM_BYTES - 512
/** Longest file name accepted anywhere (bytes of UTF-8). */
export const MAX_NAME_BYTES = 255
/**
 * Longest name a file is published under: its path in the shared folder, `/` between folders
 * (each part at most MAX_NAME_BYTES), so a dataset keeps its tree (train/0001.png and
 * val/0001.png are two files).
 */
export const MAX_PATH_NAME_BYTES = 512
/** Folders a shared folder is walked into; a published name has at most one part more. */
export const MAX_FOLDER_DEPTH = 16
/** A node that has not announced for this long is dropped from the tracker's soft state. */
export const NODE_TTL_MS = 15_000
/** How often nodes announce themselves (the tracker tells them in its reply). */
export const HEARTBEAT_MS = 3_000
/**
 * Longest wait between two heartbeats while the tracker does not answer (they double from
 * HEARTBEAT_MS, with jitter): a tracker restarted after a long outage lists everyone again within
 * about this plus one request's tries. Up to a minute before: peers reappeared 37–54 s after the
 * restart, and gets meanwhile said "not found".
 */
export const HEARTBEAT_BACKOFF_MAX_MS = 6_000
/** The first try of a tracker request waits this long for its reply; each retry waits twice as long as the one before. */
export const TRACKER_TIMEOUT_MS = 250
/** A closing node waits at most this long for the tracker to hear that it leaves (one try: unheard, its records expire after NODE_TTL_MS). */
export const LEAVE_WAIT_MS = 250
/** Tries per tracker request, the first included (250 ms · (1+2+4+8+16) ≈ 7.8 s before giving up). */
export const TRACKER_ATTEMPTS = 5
/** Most files a tracker keeps: beyond, the file no live node has held for the longest is forgotten; with every file held, publishes of new ones are refused (FULL). */
export const MAX_TRACKER_FILES = 100_000
/** Datagrams per second the tracker handles from one source address (twice that in a burst). */
export const TRACKER_RATE_PER_SOURCE = 500
/**
 * Datagrams per second a node sends its tracker at most (twice that in a burst): under the
 * tracker's limit, so a peer publishing or withdrawing thousands of files, or listing a big
 * tracker, is paced rather than having most datagrams dropped and retried (6,000 withdraws at
 * once: 4,664 failed after five tries, and their files stayed listed).
 */
export const TRACKER_CLIENT_RATE = TRACKER_RATE_PER_SOURCE * 0.8
/** Most nodes a tracker keeps. */
export const MAX_TRACKER_NODES = 100_000
/**
 * Most files one node may hold at a tracker: a peer shares at most 10,000 (MAX_SHARED_FILES), plus
 * its downloads. One node id could fill the whole registry before, and every new honest file was
 * refused (FULL) for as long as it stayed up.
 */
export const MAX_TRACKER_FILES_PER_NODE = 12_000
/** Most names one `lp2p get` takes (fetched one after the other). */
export const MAX_GET_NAMES = 1000
/** A shared file a full tracker refused (FULL) is offered again after this long. */
export const FULL_RETRY_MS = 30_000
/**
 * A file's entry (its size and root) stands against a claim that contradicts it for this long
 * after its last live holder went, and after a restart for the entries the store kept: its
 * holders come back within seconds (a peer's restart; after the tracker's, their next heartbeat
 * and publish, HEARTBEAT_BACKOFF_MAX_MS at most apart). Before, the entry was replaceable at once,
 * and a node that published every known id with a junk size right after a tracker restart took
 * them all: the real holders' publishes were refused for as long as it stayed up.
 */
export const UNHELD_ENTRY_STANDS_MS = 60_000

// ---- segmentation ----
/** Smallest piece: each piece costs a request, a hash check and a write, so tiny pieces cap throughput. */
export const MIN_BLOCK_SIZE = 256 * 1024
/** Largest piece: also bounds every frame's payload. */
export const MAX_BLOCK_SIZE = 8 * 1024 * 1024
/** Segmentation aims at about this many pieces per file. */
export const TARGET_PIECES = 1024

// ---- peers (TCP) ----
/** Largest CBOR header of a frame. */
export const MAX_HEADER_BYTES = 64 * 1024
/** Largest frame (header + payload). */
export const MAX_FRAME_BYTES = MAX_BLOCK_SIZE + MAX_HEADER_BYTES + 8
/** Neighbours asked for a cluster at once. */
export const FAN_OUT = 8
/**
 * Times a get fetches again, in the same run, stored pieces that failed the final check (changed
 * on disk since they were verified); beyond, it fails (exit 7) and a later run goes on.
 */
export const REFETCH_ROUNDS = 2
/** A neighbour that does not answer a cluster query or probe in this time is dropped. */
export const QUERY_TIMEOUT_MS = 2_000
/** A requested piece must arrive within this time or the peer is dropped. */
export const PIECE_TIMEOUT_MS = 15_000
/**
 * A download that stores no piece (nor the hash list) for this long, while none of its requests
 * waits for its own download cap, gives up (ERR_NO_SOURCES): its sources hold what it lacks but
 * decline every request (BUSY, SEEDED) or answer watches with nothing new. A piece asked of an
 * honest peer lands within PIECE_TIMEOUT_MS, and a busy one lets a starved asker through, so
 * eight of those is a wait no working swarm makes a leecher sit through; a peer that answers
 * BUSY to everything (a broken or hostile one) held a get at 0 % for good before.
 */
export const NO_PROGRESS_MS = 120_000
/** Most bytes of piece requests in flight per peer: enough to cover a fast peer's round trip, hashing and write. */
export const PIPELINE_BYTES = 16 * 1024 * 1024
/**
 * Within that, a peer gets about this much of its measured rate in flight (at least one piece,
 * and one while its rate is unknown): a peer behind an upload cap gets a short queue, so pieces
 * are picked late, with fresh knowledge of the swarm, and a piece never waits long in one
 * uplink's queue while other holders are idle.
 */
export const IN_FLIGHT_MS = 50
/**
 * A peer with more than this much queued on its uplink declines piece requests (BUSY): short
 * queues keep every holder's uplink fed by many askers instead of a few askers queueing deep.
 */
export const BUSY_QUEUE_MS = 25
/**
 * A piece that never went out from a node (new in the swarm, wanted by many) is accepted until
 * its uplink queue is this many times BUSY_QUEUE_MS: new pieces spread at once.
 */
export const FRESH_QUEUE_FACTOR = 2
/**
 * An uplink sends the queued piece with the fewest copies first (`copies` of the request: how many
 * of the asker's sources hold it, at most RAREST_FIRST_COPIES counted), so a piece new in the swarm
 * is passed on at once instead of behind common ones. A waiting piece moves up one copy for each
 * RAREST_FIRST_AGE_MS it waited: none waits more than about RAREST_FIRST_COPIES × this behind
 * rarer ones.
 */
export const RAREST_FIRST_COPIES = 8
export const RAREST_FIRST_AGE_MS = 25
/**
 * A seeder sends every piece once before any twice (its askers fetch a piece it already sent from
 * the peers it went to), but only for this long after each send: then an asker that knows no
 * other holder of that piece (`copies` ≤ 1) gets it again. Without that limit, a piece whose only
 * copy went to a peer that serves it corrupt (or that crashed with it) could not spread until the
 * seeder had sent every piece once: the whole swarm waited for it. Simulated, 100 leechers of
 * 64 MiB with 5 % of them serving corrupt data (`simulate --corrupt 0.05`), seeds 1–3: 1.320,
 * 1.452, 1.349 × the bound without the limit; 1.155, 1.227, 1.187 with 250 ms (100 ms: 1.178,
 * 1.221, 1.205, and honest swarms changed; 500 ms: 1.189, 1.354, 1.239; 1 s: 1.154, 1.417, 1.241).
 * Honest swarms: 100 × 64 MiB and 300 × 16 MiB the same bit for bit; 300 × 64 MiB, seeds 1–3,
 * 1.106, 1.104, 1.110 → 1.109, 1.107, 1.114 (askers now try the seeder for pieces sent a while
 * ago); 100 × 1 GiB 1.0171 → 1.0180; 100 × 3 GiB at 125 MB/s 1.0239 → 1.0239.
 */
export const SEEDED_LOCK_MS = 250
/** A peer that said BUSY is asked again after this long (its piece goes to another holder meanwhile). */
export const BUSY_RETRY_MS = 20
/**
 * A busy holder behind an upload cap says in its BUSY how long to wait before asking again: this
 * many of its piece times (block size / its cap). The asker waits the longer of that and
 * BUSY_RETRY_MS (doubling while it stays busy, up to MAX_BUSY_RETRY_MS), so nothing changes
 * where BUSY_RETRY_MS was tuned (256 KiB at 20 MB/s: 13 ms a piece) or with shorter pieces; with
 * longer ones (a piece of 1 MiB at 20 MB/s takes 52 ms, 4 MiB at 125 MB/s 34 ms) askers no
 * longer ask again and again while one piece goes out. Simulated (seed 1 unless said): 100 leechers of 1 GiB at 20 MB/s, 3.48 M → 2.53 M
 * control messages, 1.0173 → 1.0171 × the bound; 100 of 3 GiB at 125 MB/s, 1.68 M → 1.43 M,
 * 1.0247 → 1.0239; 300 of 16 MiB at 5 MB/s, seeds 1–6, about 480 K → 405 K, mean 1.307 → 1.306.
 * 1.5 piece times saved more (2.53 M → 1.79 M at 1 GiB) but made small files on slow links slower
 * (16 MiB at 5 MB/s: mean 1.324), and 1 piece time more so (1.351 on seeds 1–3).
 */
export const BUSY_RETRY_PIECES = 0.75
/** The longest pause a BUSY may ask for, and the longest pause after BUSYs in a row (doubling included). */
export const MAX_BUSY_RETRY_MS = 10_000
/** The pause after BUSY doubles with each BUSY in a row from the same peer, at most this many times. */
export const BUSY_MAX_DOUBLINGS = 4
/**
 * A download is starved when, over the last STARVED_WINDOW_MS, pieces landed at less than
 * STARVED_SHARE of its own average pace. A starved asker says so in its piece requests and a busy
 * holder lets it through a longer queue, as a fresh piece (FRESH_QUEUE_FACTOR); it pauses after
 * BUSY without doubling. Without this, askers that won a holder's queue kept asking every
 * BUSY_RETRY_MS while those declined a few times in a row asked every 320 ms, and lost every time
 * (the capture effect): the last nodes of a swarm finished hundreds of ms after the median.
 */
export const STARVED_WINDOW_MS = 200
export const STARVED_SHARE = 0.7
/**
 * Sources still downloading are probed for their bitfields this often (pieces they send carry it
 * too): a new piece at a holder must become known fast, or uplinks idle while it has it alone.
 */
export const REPROBE_MS = 100
/**
 * A watch (a probe that waits for news) is answered after this long when no news came: a
 * liveness check of an idle source. The asker gives up on it QUERY_TIMEOUT_MS later.
 */
export const WATCH_MS = 2_000
/** A piece a node stores answers at most this many of the watches waiting for it (see PieceLog). */
export const WATCH_NOTIFY = 2
/**
 * A holder whose uplink went idle tells up to WATCH_NOTIFY of its waiting watches what it has
 * (PieceLog.kick), and again after this long while it stays idle: a watch told may have wanted
 * nothing after all (it asked long ago), and the uplink must not idle while others want its pieces.
 */
export const KICK_RETRY_MS = 5
/** Longest wait a watch may ask for. */
export const MAX_WATCH_MS = 10_000
/**
 * Watches a peer server holds at once per connection (one per file: a newer watch for the same
 * file replaces the older). More are declined with BAD_REQUEST.
 */
export const MAX_WATCHES_PER_CONNECTION = 64
/** Longest bitfield accepted in a request (196,608 pieces: 1.5 TiB at the largest block size). */
export const MAX_BITFIELD_BYTES = 24 * 1024
/** Most pieces a file may have: as many as a bitfield carries. */
export const MAX_PIECES = MAX_BITFIELD_BYTES * 8
/**
 * Largest file we describe: MAX_PIECES of the largest block (1.5 TiB). Segmentation never needs
 * more pieces for it; a bigger file could not be fetched (its bitfields would not be accepted),
 * and its piece counters would cost the tracker's dashboard gigabytes.
 */
export const MAX_FILE_SIZE = MAX_PIECES * MAX_BLOCK_SIZE
/**
 * A piece from a source whose rate is measured must come within STALL_FACTOR times what it should
 * take (its window ahead of it included), at least STALL_MIN_MS, else the source is dropped and its
 * pieces go elsewhere (PIECE_TIMEOUT_MS still bounds it, and applies while the rate is unknown).
 */
export const STALL_FACTOR = 10
export const STALL_MIN_MS = 500
/** Requests in flight per peer: PIPELINE_BYTES worth of pieces, within these bounds. */
export const MIN_PIPELINE = 4
export const MAX_PIPELINE = 32
/** Most peers returned in one cluster reply. */
export const MAX_PEERS_PER_REPLY = 64
/** Most peers a leecher uses at once. */
export const MAX_SOURCES = 16
/**
 * A download whose sources are full swaps one out each discovery round: of the peers it has used
 * for at least this long (and that are still downloading too), the one that gave it the fewest
 * bytes since the last round makes room for a peer of the cluster it does not use yet. Sources
 * picked at the start, when few peers were known, are the peers everyone picked: in a swarm of
 * 300 the first quarter to start were sources for 45 peers each, the last quarter for 19, and the
 * first quarter finished last. Swapping trades the source that gives least for a fresh one (300
 * leechers, 64 MiB, seeds 1–3: 1.127, 1.123, 1.128 × the bound → 1.106, 1.104, 1.110, with 1 %
 * more control messages; every start quartile gained, the in-degrees hardly moved).
 */
export const SOURCE_SWAP_AGE_MS = 500
/**
 * A discovery round takes the sources whose probes answer within this long of the first answer
 * together (then the next ones as they come): a member that stays silent (gone since it was
 * listed) holds the others back no longer than this, not until its timeout.
 */
export const DISCOVERY_BATCH_MS = 250
/**
 * Most concurrent inbound connections a peer accepts. When full, a new one takes the place of the
 * connection idle longest (no request queued, no watch held, no complete frame for the longest);
 * else of the one holding only watches the longest; else of the reader taking its replies the
 * slowest, if slower than MIN_DRAIN_BYTES_PER_S; else of the one connected longest, if for more
 * than CONNECTION_TENURE_MS; else it is refused.
 */
export const MAX_CONNECTIONS = 128
/**
 * A connection served this long gives its slot to a newcomer when every slot is taken by readers
 * fast enough to keep theirs: 128 connections reading fast held every slot of a peer for good (a
 * host with a few addresses needs no more), and every get that came later was refused.
 */
export const CONNECTION_TENURE_MS = 60_000
/**
 * Inbound connections from one remote address at once (off loopback: every local process is
 * 127.0.0.1). A node opens one connection per peer; a few `get`s on one machine stay well under it.
 */
export const MAX_CONNECTIONS_PER_ADDRESS = 16
/**
 * A peer connection whose replies wait unsent this long, its reader taking them slower than
 * MIN_DRAIN_BYTES_PER_S (or not at all), is closed.
 */
export const WRITE_STALL_MS = 30_000
/**
 * Least rate at which a reader must take the replies waiting for it (see WRITE_STALL_MS): a client
 * reading one chunk every few seconds held its slot for good (130 of them took every slot of a
 * peer, and honest gets failed). A LAN reader takes megabytes a second; a capped get asks only
 * for what its cap lets in, so its replies never wait.
 */
export const MIN_DRAIN_BYTES_PER_S = 64 * 1024
/** A request frame started must be complete within this long, or its connection is closed (a trickle of bytes keeps no slot). */
export const FRAME_DEADLINE_MS = 5_000
/** Most requests a connection may have outstanding at a peer. */
export const MAX_OUTSTANDING_PER_CONNECTION = 64
/** A connection with nothing in flight is closed after this long. */
export const IDLE_TIMEOUT_MS = 60_000
/** Bytes of piece buffers the in-order file hasher may hold before falling back to re-reading from disk. */
export const HASH_HOLD_BYTES = 64 * 1024 * 1024
/** Descriptors of mapped files (shared files, downloads being served) kept open at once; the least recently used are closed and opened again when needed. */
export const MAX_OPEN_FILES = 256
/** mmap window for serving and hashing: big files are mapped in windows this large. */
export const MMAP_WINDOW_BYTES = 256 * 1024 * 1024

// ---- tracker dashboard (HTTP) ----
/** Browsers following the live dashboard at once; more get 503. */
export const MAX_DASHBOARD_CLIENTS = 32
/** Connections to the dashboard from one address at once (a browser opens a few; the rest wait their turn or are refused). */
export const MAX_DASHBOARD_CONNECTIONS_PER_ADDRESS = 16
/**
 * A dashboard connection where nothing moved for this long is closed (a live viewer gets a
 * snapshot every second): 80 connections that sent pipelined requests and never read their
 * answers locked everyone out for as long as they were held.
 */
export const DASHBOARD_IDLE_MS = 10_000
/** Requests one dashboard connection may make (a pipelined flood of them on one connection is cut there). */
export const DASHBOARD_REQUESTS_PER_CONNECTION = 16
/** How often the dashboard pushes a snapshot (and probes holders for availability). */
export const DASHBOARD_TICK_MS = 1_000
/** Most files and nodes listed in one snapshot (the page says how many more there are). */
export const DASHBOARD_MAX_FILES = 50
export const DASHBOARD_MAX_NODES = 200
/** Files whose holders are probed for the availability heatmap, and holders probed per file. */
export const DASHBOARD_PROBE_FILES = 8
export const DASHBOARD_PROBE_HOLDERS = 64
/** A holder that does not answer a dashboard probe in this time counts as holding nothing this round. */
export const DASHBOARD_PROBE_TIMEOUT_MS = 800
/** Heatmap cells per file: files with more pieces are downsampled to this many columns. */
export const DASHBOARD_HEATMAP_CELLS = 256
/** A live client whose unsent output exceeds this is too slow: it is dropped. */
export const DASHBOARD_CLIENT_BUFFER_BYTES = 1024 * 1024

/**
 * A mapped file that left the disk (removed, replaced) keeps its blocks while mapped, and a
 * mapping goes only when collected: a full collection is asked for this long after it was closed,
 * then at doubling intervals up to UNMAP_MAX_MS while any mapping of it is left, at most
 * UNMAP_TRIES times (see storage/unmap.ts).
 */
export const UNMAP_FIRST_MS = 1_000
export const UNMAP_MAX_MS = 60_000
export const UNMAP_TRIES = 8

/** A get of several names resolves them in one tracker listing while it is younger than this (see SharedListing). */
export const LISTING_REUSE_MS = 15_000
/** ...and, younger than this, whatever it says of the name (see SharedListing). */
export const LISTING_FRESH_MS = 2_000

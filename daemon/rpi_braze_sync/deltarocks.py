"""RocksDB as delta's store uses it (deltastore.py): the binding, imported on first use, its
options (each measured), and the modes of the store's files.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by rocks() when a store is opened
    import rocksdict

FILE_MODE, DIR_MODE = 0o640, 0o750

# Memory, whatever the number of users: the block cache and the memtables are fixed; each
# table's index and bloom filter live in the cache too, partitioned, with only their small
# top level pinned. Measured (600,000 users of 500-byte records): 29 MB of resident memory
# with these sizes, 41 MB with 16 and 8; the daemon's whole budget is 150 MB at 5M users.
CACHE_BYTES = 8 << 20
MEMTABLE_BYTES = 4 << 20


@functools.cache
def rocks() -> ModuleType:
    """RocksDB's binding, imported when a store is first opened: the import alone costs about
    8 MB of resident memory, which a daemon with delta off (the default) should not pay."""
    import rocksdict

    return rocksdict


def options(create: bool) -> rocksdict.Options:
    rdb = rocks()
    opts: rocksdict.Options = rdb.Options(raw_mode=True)
    opts.create_if_missing(create)
    table = rdb.BlockBasedOptions()
    table.set_block_cache(rdb.Cache(CACHE_BYTES))
    table.set_bloom_filter(10, False)  # a user never seen costs no block read
    table.set_cache_index_and_filter_blocks(True)
    table.set_index_type(rdb.BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    # The path fingerprints repeat from record to record: LZ4 halves the size on disk.
    opts.set_compression_type(rdb.DBCompressionType.lz4())
    opts.set_bottommost_compression_type(rdb.DBCompressionType.lz4())
    opts.set_write_buffer_size(MEMTABLE_BYTES)
    # A bloom filter of each memtable's keys (a tenth of its size): a user never seen skips
    # its skip list (a first run's lookups, 200,000 users: 1.15 -> 0.77 us a key).
    opts.set_memtable_prefix_bloom_ratio(0.1)
    opts.set_memtable_whole_key_filtering(True)
    opts.set_max_write_buffer_number(2)
    # Files of 8 MB: a first run of an export in id order (or nearly: "u99" comes before
    # "u100") adds files that overlap only the last few of the level below, and smaller
    # ones make compaction rewrite less of them (1M users, bytes written by compaction: 370
    # -> 280 a user, 104 of them by flushes; 810 with keys in random order).
    opts.set_target_file_size_base(8 << 20)
    opts.set_level_compaction_dynamic_level_bytes(True)
    # Level 0 compacted 8 files at a time, not 4: each compaction rewrites the files of the
    # level below that its keys overlap, so fewer, larger ones rewrite less (in-process, the
    # daemon's records, 1M users in id order: compaction 2.3-2.8 -> 1.8 us CPU a user, its
    # input 1.7-2.1 -> 1.5 records a user; 200,000: 1.4-1.7 -> 0.5-0.7, some of it left to
    # the next writes). Lookups, a miss or a hit, no slower: each L0 file's filter is pinned.
    opts.set_level_zero_file_num_compaction_trigger(8)
    opts.set_max_background_jobs(2)
    # A flushed memtable's WAL is kept and written over by the next one instead of a new
    # file: the writes, made on the daemon's loop, allocate no new pages or blocks (200,000
    # records of 200 B in batches of 75, 6 pairs alternating: write 0.90-1.17 -> 0.65-0.85
    # us a record, medians 0.97 -> 0.78). Costs that WAL on disk, whatever the number of
    # users (about MEMTABLE_BYTES: a store of 200,000 users 24 -> 29 MB). Each write is in
    # the WAL as before and synced by flush_wal (deltastore.py's order): a recycled WAL's
    # records carry their file's number, so recovery stops at the older file's tail
    # (RocksDB 10.4 in rocksdict 0.3.29, point-in-time recovery; 14 kill -9 during large
    # writes, each restart exact). RocksDB's own crash test lost data with recycling only
    # where sequence numbers are used without a WAL record (disableWAL, ingested files):
    # never here, keep it so.
    opts.set_recycle_log_file_num(1)
    opts.set_max_open_files(512)
    opts.set_keep_log_file_num(2)
    opts.set_max_log_file_size(1 << 20)
    return opts


def restrict_modes(directory: Path) -> None:
    """0750 folders, 0640 files; and a umask that keeps it so for the files RocksDB creates
    later from its own threads (the systemd unit sets UMask=0027 too)."""
    os.umask(os.umask(0) | 0o027)
    for path in (directory, *directory.rglob("*")):
        mode = DIR_MODE if path.is_dir() else FILE_MODE
        if path.stat().st_mode & 0o777 & ~mode:
            path.chmod(mode)

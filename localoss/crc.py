"""CRC-64/XZ (ECMA-182, reflected) as OSS computes it, written here independently of any client."""

from __future__ import annotations

import threading

# --- CRC-64/XZ (ECMA-182, reflected), by polynomial folding on Python integers ----------------
#
# A byte-at-a-time table loop in Python manages ~8 MB/s. Treating the data as one polynomial
# and folding it in half with carry-less multiplications by x^k mod P keeps the work in
# big-integer operations that run in C: ~40-50 MB/s.

_MASK64 = (1 << 64) - 1
_POLY = (1 << 64) | 0x42F0E1EBA9EA3693
_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_xpow_cache: dict[int, int] = {}
_xpow_lock = threading.Lock()


def _reflect64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "big").translate(_REV8), "little")


def _mod_small(value: int) -> int:
    n = value.bit_length()
    while n > 64:
        value ^= _POLY << (n - 65)
        n = value.bit_length()
    return value


def _clmul(big: int, small: int) -> int:
    """Carry-less product of `big` and a small (<= 64-bit) factor.

    Up to 1 Mbit, four bits of `small` at a time: the products of `big` by every nibble first (14
    shifts and XORs), then one XOR per nibble; ~1.4x faster than one XOR per set bit on a 20 KB
    body. Past that the table's 16 copies of `big` no longer stay in cache and the plain loop wins."""
    if small < 16 or big.bit_length() > 1 << 20:
        result, shift = 0, 0
        while small:
            if small & 1:
                result ^= big << shift
            small >>= 1
            shift += 1
        return result
    table = [0, big]
    for n in range(2, 16):
        table.append(table[n - 1] ^ big if n & 1 else table[n >> 1] << 1)
    result, shift = 0, 0
    while small:
        nibble = small & 15
        if nibble:
            result ^= table[nibble] << shift
        small >>= 4
        shift += 4
    return result


def _xpow(k: int) -> int:
    """x^k mod P."""
    cached = _xpow_cache.get(k)
    if cached is not None:
        return cached
    if k < 64:
        value = 1 << k
    else:
        half = _xpow(k // 2)
        value = _mod_small(_clmul(half, half))
        if k & 1:
            value = _mod_small(value << 1)
    with _xpow_lock:
        _xpow_cache[k] = value
    return value


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-64/XZ of `data`, continuing from the CRC `crc` of what came before it."""
    nbits = len(data) * 8
    message = int.from_bytes(bytes(data).translate(_REV8), "big")
    value = (_reflect64(crc ^ _MASK64) << nbits) ^ (message << 64)
    size = nbits + 64
    while size > 128:
        k = (size // 2 + 63) // 64 * 64
        value = _clmul(value >> k, _xpow(k)) ^ (value & ((1 << k) - 1))
        size = max(k, size - k + 64)
    return _reflect64(_mod_small(value)) ^ _MASK64


def crc64_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC of A+B from crc(A), crc(B) and len(B), without the data (for multipart objects).

    With R(M) = (1s * x^len(M) + M * x^64) mod P and crc = reflect(R) ^ 1s:
    R(A+B) = x^(8*len2) * (R(A) + 1s) + R(B), and R(A) + 1s = reflect(crc(A)).
    """
    if len2 == 0:
        return crc1
    return _reflect64(_mod_small(_clmul(_reflect64(crc1), _xpow(8 * len2)))) ^ crc2

# Seed corpus for fuzz_session: message streams a client might send after attach
# (fid 0 attached as glenda; afid 100 holds the good credential). Each seed starts with
# one byte choosing the dialect: 0 for 9P2000, 1 for 9P2000.L (the 'l_' seeds).
import struct, os, sys
out = sys.argv[1]
def msg(t, tag, body): return struct.pack('<IBH', 7 + len(body), t, tag) + body
def s(x): x = x.encode(); return struct.pack('<H', len(x)) + x
def walk(tag, fid, newfid, *names): return msg(110, tag, struct.pack('<IIH', fid, newfid, len(names)) + b''.join(s(n) for n in names))
def open_(tag, fid, mode): return msg(112, tag, struct.pack('<IB', fid, mode))
def create(tag, fid, name, perm, mode): return msg(114, tag, struct.pack('<I', fid) + s(name) + struct.pack('<IB', perm, mode))
def read(tag, fid, off, n): return msg(116, tag, struct.pack('<IQI', fid, off, n))
def write(tag, fid, off, d): return msg(118, tag, struct.pack('<IQI', fid, off, len(d)) + d)
def clunk(tag, fid): return msg(120, tag, struct.pack('<I', fid))
def remove(tag, fid): return msg(122, tag, struct.pack('<I', fid))
def stat(tag, fid): return msg(124, tag, struct.pack('<I', fid))
def flush(tag, old): return msg(108, tag, struct.pack('<H', old))
def auth(tag, afid, uname, aname=''): return msg(102, tag, struct.pack('<I', afid) + s(uname) + s(aname))
def attach(tag, fid, afid, uname, aname=''): return msg(104, tag, struct.pack('<II', fid, afid) + s(uname) + s(aname))
good = b'galaxy-fuzz-credential\n'
NOFID = 0xffffffff
seeds = {
  'walk_read_big': walk(2, 0, 1, 'big') + open_(3, 1, 0) + read(4, 1, 0, 100) + clunk(5, 1),
  'create_write_read': walk(2, 0, 1) + create(3, 1, 'f', 0o644, 2) + write(4, 1, 0, b'hello') + read(5, 1, 0, 10) + remove(6, 1),
  'mkdir_walk_up': walk(2, 0, 1) + create(3, 1, 'd', 0x80000000 | 0o755, 0) + clunk(4, 1) + walk(5, 0, 2, 'd', '..', 'd') + stat(6, 2),
  'events_flush': walk(2, 0, 1, 'events') + open_(3, 1, 0) + read(4, 1, 0, 100) + flush(5, 4) + read(6, 1, 0, 100) + walk(7, 0, 2) + create(8, 2, 'x', 0o644, 1),
  'dirread': walk(2, 0, 1) + open_(3, 1, 0) + read(4, 1, 0, 8000) + read(5, 1, 73, 100) + clunk(6, 1),
  # Odd tags: the verification is still in flight when the next message arrives.
  'auth_pipelined': auth(3, 7, 'glenda') + write(5, 7, 0, good[:6]) + write(7, 7, 6, good[6:]) + attach(9, 1, 7, 'glenda') + read(11, 7, 0, 10) + walk(13, 1, 2, 'big') + clunk(4, 7),
  'auth_refused': auth(3, 7, 'glenda') + write(5, 7, 0, b'forged\n') + attach(7, 1, 7, 'glenda') + attach(8, 1, NOFID, 'glenda') + stat(10, 7),
  'auth_flush': auth(3, 7, 'glenda') + write(5, 7, 0, good) + attach(7, 1, 7, 'glenda') + flush(9, 7) + flush(11, 5) + attach(12, 2, 7, 'glenda') + walk(14, 7, 8),
  'auth_flood': b''.join(auth(3 + i, 200 + i, 'x') for i in range(70)) + write(2, 200, 0, b'M' * 100) + remove(4, 201),
  'version_reset': walk(2, 0, 1, 'events') + open_(3, 1, 0) + read(4, 1, 0, 10) + msg(100, 0xffff, struct.pack('<I', 8192) + s('9P2000')) + stat(5, 0),
}
# 9P2000.L (Linux include/net/9p/9p.h): the kernel's requests.
def lopen(tag, fid, flags): return msg(12, tag, struct.pack('<II', fid, flags))
def lcreate(tag, fid, name, flags, mode): return msg(14, tag, struct.pack('<I', fid) + s(name) + struct.pack('<III', flags, mode, 0))
def getattr_(tag, fid): return msg(24, tag, struct.pack('<IQ', fid, 0x7ff))
def setattr_(tag, fid, valid, size): return msg(26, tag, struct.pack('<IIIIIQQQQQ', fid, valid, 0, 0, 0, size, 0, 0, 0, 0))
def readdir(tag, fid, off, n): return msg(40, tag, struct.pack('<IQI', fid, off, n))
def mkdir(tag, dfid, name): return msg(72, tag, struct.pack('<I', dfid) + s(name) + struct.pack('<II', 0o755, 0))
def rename(tag, fid, dfid, name): return msg(20, tag, struct.pack('<II', fid, dfid) + s(name))
def statfs(tag, fid): return msg(8, tag, struct.pack('<I', fid))
def xattrwalk(tag, fid, newfid, name): return msg(30, tag, struct.pack('<II', fid, newfid) + s(name))
def unlinkat(tag, dfid, name): return msg(76, tag, struct.pack('<I', dfid) + s(name) + struct.pack('<I', 0))
lseeds = {
  'l_getattr_read': walk(2, 0, 1, 'big') + getattr_(4, 1) + lopen(6, 1, 0) + read(8, 1, 0, 100) + clunk(10, 1),
  'l_create_truncate': walk(2, 0, 1) + lcreate(4, 1, 'f', 2, 0o644) + write(6, 1, 0, b'hello') + setattr_(8, 1, 0x68, 0) + getattr_(10, 1) + rename(12, 1, 0, 'g'),
  'l_readdir_grow': walk(2, 0, 1) + lopen(4, 1, 0o200000) + readdir(6, 1, 0, 60) + mkdir(8, 0, 'd') + readdir(10, 1, 3, 60) + readdir(12, 1, 0, 8000) + unlinkat(14, 0, 'd'),
  'l_events_flush': walk(2, 0, 1, 'events') + lopen(4, 1, 0) + read(6, 1, 0, 100) + flush(8, 6) + readdir(6, 1, 0, 100) + statfs(10, 0) + xattrwalk(12, 0, 5, ''),
}
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    open(os.path.join(out, name), 'wb').write(b'\x00' + data)
for name, data in lseeds.items():
    open(os.path.join(out, name), 'wb').write(b'\x01' + data)

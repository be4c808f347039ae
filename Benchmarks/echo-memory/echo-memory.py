#!/usr/bin/env python3
# echo-memory.py RING_ECHO N: starts a ring-echo binary, opens N connections to it, echoes 100
# bytes on each, and prints the server's resident and virtual memory and descriptor count
# before and after (from /proc). Compares receive-memory strategies of two ring-echo builds.
import socket, subprocess, sys, time, os, resource
binary, n = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2)
p = subprocess.Popen([binary], stdout=subprocess.PIPE, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2))
line = p.stdout.readline().decode()
port = int(line.strip().rsplit(':', 1)[1])
def status():
    d = {}
    for l in open(f'/proc/{p.pid}/status'):
        k, v = l.split(':', 1)
        d[k] = v.strip()
    return d['VmRSS'] + ' (virtual ' + d['VmSize'] + ')', len(os.listdir(f'/proc/{p.pid}/fd'))
base = status()
conns = []
for i in range(n):
    s = socket.create_connection(('127.0.0.1', port)); conns.append(s)
for s in conns: s.sendall(b'x' * 100)
for s in conns:
    got = b''
    while len(got) < 100: got += s.recv(100)
time.sleep(0.5)
after = status()
print(f'{os.path.basename(binary)}: {n} connections: RSS {base[0]} -> {after[0]}, descriptors {base[1]} -> {after[1]}')
for s in conns: s.close()
p.kill()

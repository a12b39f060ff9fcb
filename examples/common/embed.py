#!/usr/bin/env python3
"""Writes a C file that holds a file's bytes: embed.py INPUT OUTPUT SYMBOL [MARKER MODULE]...

With MARKER MODULE pairs, each MARKER in INPUT is replaced by the JavaScript module MODULE with
its `export` keywords taken off, so that a page carries a module of clients/js inline.

Defines `const char SYMBOL[]` (NUL-terminated) and `const size_t SYMBOL_len`, so an example's
shared object carries its static page and needs no file at run time."""
import sys

src, dst, sym = sys.argv[1:4]
data = open(src, 'rb').read()
for marker, module in zip(sys.argv[4::2], sys.argv[5::2]):
    js = open(module, 'rb').read().replace(b'\nexport ', b'\n')
    if marker.encode() not in data:
        sys.exit('embed.py: %s is not in %s' % (marker, src))
    data = data.replace(marker.encode(), js)
with open(dst, 'w') as out:
    out.write('/* Generated from %s by examples/common/embed.py. */\n' % src.split('/')[-1])
    out.write('#include <stddef.h>\n\n')
    out.write('extern const char %s[];\nextern const size_t %s_len;\n\n' % (sym, sym))
    out.write('const char %s[] = {\n' % sym)
    for i in range(0, len(data), 16):
        out.write('\t' + ''.join('%d, ' % b for b in data[i:i + 16]) + '\n')
    out.write('\t0};\n')
    out.write('const size_t %s_len = %d;\n' % (sym, len(data)))

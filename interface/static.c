#include "interface/static.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATIC_MAX_FILE (64 * 1024 * 1024)

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{"html", "text/html; charset=utf-8"},  {"htm", "text/html; charset=utf-8"},
	{"js", "text/javascript; charset=utf-8"}, {"mjs", "text/javascript; charset=utf-8"},
	{"css", "text/css; charset=utf-8"},    {"json", "application/json"},
	{"txt", "text/plain; charset=utf-8"},  {"map", "application/json"},
	{"svg", "image/svg+xml"},	       {"png", "image/png"},
	{"jpg", "image/jpeg"},		       {"jpeg", "image/jpeg"},
	{"gif", "image/gif"},		       {"ico", "image/x-icon"},
	{"webp", "image/webp"},		       {"wasm", "application/wasm"},
	{"woff", "font/woff"},		       {"woff2", "font/woff2"},
};

int static_mount_parse(struct static_mount *m, const char *spec, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || spec[0] != '/' || !eq[1]) {
		snprintf(err, errlen, "--static wants PREFIX=DIR with PREFIX starting with '/', not \"%s\"",
			 spec);
		return -1;
	}
	char resolved[PATH_MAX];
	if (!realpath(eq + 1, resolved)) {
		snprintf(err, errlen, "--static %s: %s", eq + 1, strerror(errno));
		return -1;
	}
	struct stat st;
	if (stat(resolved, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--static %s is not a directory", eq + 1);
		return -1;
	}
	size_t plen = (size_t)(eq - spec);
	bool slash = spec[plen - 1] == '/';
	m->prefix = xmalloc(plen + 2);
	memcpy(m->prefix, spec, plen);
	if (!slash)
		m->prefix[plen++] = '/';
	m->prefix[plen] = '\0';
	m->dir = xstrdup(resolved);
	return 0;
}

void static_mount_fini(struct static_mount *m)
{
	free(m->prefix);
	free(m->dir);
	m->prefix = m->dir = NULL;
}

static const char *content_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	if (dot && (!slash || dot > slash))
		for (size_t i = 0; i < ARRAY_SIZE(types); i++)
			if (strcasecmp(dot + 1, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

static void head(struct buf *out, int status, const char *reason, const char *date,
		 bool keep_alive)
{
	buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: laurel\r\n%s", status, reason, date,
		   keep_alive ? "" : "Connection: close\r\n");
}

static void simple(struct buf *out, int status, const char *reason, const char *date,
		   bool keep_alive, bool with_body, int *pstatus, uint64_t *bytes)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s\n", reason);
	head(out, status, reason, date, keep_alive);
	buf_printf(out, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n", n);
	if (with_body)
		buf_append(out, body, (size_t)n);
	*pstatus = status;
	*bytes = with_body ? (uint64_t)n : 0;
}

bool static_serve(const struct static_mount *mounts, size_t n, const char *method,
		  const char *path, size_t pathlen, const char *if_modified_since,
		  const char *date, bool keep_alive, struct buf *out, int *status, uint64_t *bytes)
{
	const struct static_mount *m = NULL;
	for (size_t i = 0; i < n && !m; i++) {
		size_t pl = strlen(mounts[i].prefix);
		if (strncmp(path, mounts[i].prefix, pl) == 0 ||
		    (strlen(path) == pl - 1 && strncmp(path, mounts[i].prefix, pl - 1) == 0))
			m = &mounts[i];
	}
	if (!m)
		return false;
	bool is_head = strcmp(method, "HEAD") == 0;
	if (!is_head && strcmp(method, "GET") != 0) {
		head(out, 405, "Method Not Allowed", date, keep_alive);
		buf_printf(out, "Allow: GET, HEAD\r\nContent-Length: 0\r\n\r\n");
		*status = 405;
		*bytes = 0;
		return true;
	}
	/* A NUL (%00) would cut the name short and serve another file than the one asked for. */
	if (memchr(path, '\0', pathlen)) {
		simple(out, 404, "Not Found", date, keep_alive, !is_head, status, bytes);
		return true;
	}
	const char *rel = path + strlen(m->prefix) - 1;
	if (strlen(path) < strlen(m->prefix))
		rel = "/";
	/* No ".." segments and no NUL: never leave the directory by name. */
	for (const char *p = rel; *p; p++) {
		if (p[0] == '/' && p[1] == '.' && p[2] == '.' && (p[3] == '/' || p[3] == '\0')) {
			simple(out, 404, "Not Found", date, keep_alive, !is_head, status, bytes);
			return true;
		}
	}
	char full[PATH_MAX], resolved[PATH_MAX];
	snprintf(full, sizeof(full), "%s%s", m->dir, rel);
	struct stat st;
	if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
		size_t fl = strlen(full);
		snprintf(full + fl, sizeof(full) - fl, "%sindex.html", full[fl - 1] == '/' ? "" : "/");
	}
	/* And not by a symlink either. */
	size_t dl = strlen(m->dir);
	if (!realpath(full, resolved) || strncmp(resolved, m->dir, dl) != 0 ||
	    (resolved[dl] != '/' && resolved[dl] != '\0') || stat(resolved, &st) < 0 ||
	    !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_FILE) {
		simple(out, 404, "Not Found", date, keep_alive, !is_head, status, bytes);
		return true;
	}
	char lastmod[64];
	struct tm tm;
	gmtime_r(&st.st_mtime, &tm);
	strftime(lastmod, sizeof(lastmod), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (if_modified_since) {
		struct tm ims = {0};
		const char *end = strptime(if_modified_since, "%a, %d %b %Y %H:%M:%S GMT", &ims);
		if (end && timegm(&ims) >= st.st_mtime) {
			head(out, 304, "Not Modified", date, keep_alive);
			buf_printf(out, "Last-Modified: %s\r\n\r\n", lastmod);
			*status = 304;
			*bytes = 0;
			return true;
		}
	}
	int fd = open(resolved, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		simple(out, 404, "Not Found", date, keep_alive, !is_head, status, bytes);
		return true;
	}
	head(out, 200, "OK", date, keep_alive);
	buf_printf(out, "Content-Type: %s\r\nContent-Length: %lld\r\nLast-Modified: %s\r\n"
			"Cache-Control: no-cache\r\n\r\n",
		   content_type(resolved), (long long)st.st_size, lastmod);
	*status = 200;
	*bytes = 0;
	if (!is_head) {
		buf_reserve(out, (size_t)st.st_size);
		ssize_t r;
		while ((r = read(fd, out->data + out->len, (size_t)st.st_size - *bytes)) > 0) {
			out->len += (size_t)r;
			*bytes += (uint64_t)r;
			if (*bytes >= (uint64_t)st.st_size)
				break;
		}
		out->data[out->len] = '\0';
	}
	close(fd);
	return true;
}

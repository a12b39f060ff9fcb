// laurel's browser (and Node) client: a WebSocket that reconnects, and recovers the messages of
// groups with a history that it missed while away (docs/recovery.md). An ES module with no
// dependencies. See README.md.

const ENVELOPE = /^\{"group":/;

/** A WebSocket to a laurel application that reconnects and recovers group messages. */
export class LaurelSocket extends EventTarget {
  /**
   * @param {string} url ws:// or wss:// URL of the application's WebSocket route.
   * @param {object} [o]
   * @param {number} [o.minDelay=500] first reconnect delay cap, ms (full jitter below it)
   * @param {number} [o.maxDelay=30000] largest reconnect delay cap, ms
   * @param {object} [o.storage] where positions are kept across page loads
   *   (sessionStorage, or anything with getItem/setItem); none by default
   * @param {string} [o.storageKey="laurel:" + url]
   * @param {(url: string, positions: object) => string} [o.recoverUrl] the URL to connect to,
   *   given the positions {group: {epoch, offset}}; by default ?epoch=E&offset=N for one
   *   group, ?recover=GROUP:E:N (repeated) for several
   * @param {string|string[]} [o.protocols]
   * @param {Function} [o.WebSocket=globalThis.WebSocket]
   */
  constructor(url, o = {}) {
    super();
    this.url = url;
    this.o = { minDelay: 500, maxDelay: 30000, storageKey: "laurel:" + url, ...o };
    this.WS = o.WebSocket || globalThis.WebSocket;
    this.positions = {};
    this.attempt = 0;
    this.state = "closed"; // connecting, open, reconnecting, closed
    this.ws = null;
    this.timer = null;
    this.streams = new Map();
    try {
      const kept = this.o.storage && this.o.storage.getItem(this.o.storageKey);
      if (kept) this.positions = JSON.parse(kept) || {};
    } catch (e) { this.positions = {}; }
    this._online = () => { if (this.state === "reconnecting") this._open(); };
    this._offline = () => { if (this.ws && this.state === "open") this.ws.close(4000, "offline"); };
    if (typeof globalThis.addEventListener === "function") {
      globalThis.addEventListener("online", this._online);
      globalThis.addEventListener("offline", this._offline);
    }
    this._open();
  }

  /** Sends text (a string, or any other value as JSON) or binary data. */
  send(data) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    const t = typeof data;
    this.ws.send(t === "string" || data instanceof ArrayBuffer || ArrayBuffer.isView(data) ||
      (typeof Blob !== "undefined" && data instanceof Blob) ? data : JSON.stringify(data));
    return true;
  }

  /** A stream of Channels' demultiplexer: {send(payload), on(fn)}. */
  stream(name) {
    let s = this.streams.get(name);
    if (!s) {
      const fns = [];
      s = {
        send: (payload) => this.send({ stream: name, payload }),
        on: (fn) => { fns.push(fn); return s; },
        fns,
      };
      this.streams.set(name, s);
    }
    return s;
  }

  /** Closes for good (no reconnect). */
  close(code = 1000, reason = "") {
    this.state = "closed";
    clearTimeout(this.timer);
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._online);
      globalThis.removeEventListener("offline", this._offline);
    }
    if (this.ws) this.ws.close(code, reason);
  }

  _emit(type, detail) { this.dispatchEvent(Object.assign(new Event(type), { detail })); }

  _target() {
    if (this.o.recoverUrl) return this.o.recoverUrl(this.url, this.positions);
    const groups = Object.keys(this.positions).filter((g) => this.positions[g].epoch);
    if (!groups.length) return this.url;
    const u = new URL(this.url);
    if (groups.length === 1) {
      u.searchParams.set("epoch", this.positions[groups[0]].epoch);
      u.searchParams.set("offset", String(this.positions[groups[0]].offset));
    } else {
      for (const g of groups)
        u.searchParams.append("recover", g + ":" + this.positions[g].epoch + ":" +
          this.positions[g].offset);
    }
    return u.toString();
  }

  _open() {
    clearTimeout(this.timer);
    if (this.state === "closed" && this.ws) return;
    this.state = this.attempt ? "reconnecting" : "connecting";
    let ws;
    try {
      ws = new this.WS(this._target(), this.o.protocols);
    } catch (e) {
      this._emit("error", e);
      return this._retry();
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.attempt = 0;
      this.state = "open";
      this._emit("connect", { url: ws.url });
    };
    ws.onmessage = (e) => this._frame(e.data);
    ws.onerror = (e) => this._emit("error", e);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._emit("disconnect", { code: e.code, reason: e.reason,
        reconnecting: this.state !== "closed" });
      if (this.state !== "closed") this._retry(); // a listener may have closed it for good
    };
  }

  _retry() {
    this.state = "reconnecting";
    if (typeof navigator !== "undefined" && navigator.onLine === false) return; // on "online"
    const cap = Math.min(this.o.maxDelay, this.o.minDelay * 2 ** this.attempt++);
    const delay = Math.random() * cap; // full jitter
    this._emit("reconnecting", { delay, attempt: this.attempt });
    this.timer = setTimeout(() => this._open(), delay);
  }

  _keep(group, epoch, offset) {
    this.positions[group] = { epoch, offset };
    if (this.o.storage) {
      try { this.o.storage.setItem(this.o.storageKey, JSON.stringify(this.positions)); }
      catch (e) { /* full or forbidden: positions live in memory only */ }
    }
  }

  _frame(data) {
    if (typeof data === "string" && ENVELOPE.test(data)) {
      let f = null;
      try { f = JSON.parse(data); } catch (e) { /* not an envelope after all */ }
      if (f && typeof f.group === "string" && typeof f.epoch === "string" &&
          Number.isInteger(f.offset)) {
        if (typeof f.recovered === "boolean") {
          this._keep(f.group, f.epoch, f.offset);
          this._emit("recovery", { group: f.group, epoch: f.epoch, offset: f.offset,
            recovered: f.recovered });
          return;
        }
        if ("text" in f || "bytes" in f) {
          const p = this.positions[f.group];
          if (p && p.epoch === f.epoch && f.offset <= p.offset) return; // seen already
          this._keep(f.group, f.epoch, f.offset);
          const body = "text" in f ? f.text : Uint8Array.from(atob(f.bytes), (c) => c.charCodeAt(0));
          return this._deliver(body, f);
        }
      }
    }
    this._deliver(data, null);
  }

  _deliver(data, f) {
    const detail = f ? { data, group: f.group, epoch: f.epoch, offset: f.offset } : { data };
    if (typeof data === "string" && data.startsWith('{"stream"') && this.streams.size) {
      try {
        const m = JSON.parse(data);
        const s = this.streams.get(m.stream);
        if (s) { for (const fn of s.fns) fn(m.payload, detail); return; }
      } catch (e) { /* a plain message */ }
    }
    this._emit("message", detail);
  }
}

// The gateway's API, called with the bearer token held in memory. A 401 means the token is no
// longer accepted (expired, or its key rotated): the caller is sent back to sign-in.

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `the gateway answered ${status}`);
    this.status = status;
    this.code = body.error;
  }
}

export class Api {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async call(method, path) {
    const response = await fetch(path, {
      method, cache: "no-store", credentials: "omit",
      headers: { Authorization: `Bearer ${this.token}` },
    });
    if (response.status === 401) this.onUnauthorized();
    return response;
  }

  async json(method, path) {
    const response = await this.call(method, path);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, body);
    return { status: response.status, body };
  }

  get(path) { return this.json("GET", path); }

  /** The export as a Blob, reporting (records, bytes) read as they arrive. */
  async exportBlob(onProgress) {
    const response = await this.call("GET", "/v1/export");
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
    const reader = response.body.getReader();
    const chunks = [];
    let records = 0, bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      bytes += value.length;
      for (const b of value) if (b === 10) records += 1;
      onProgress(records, bytes);
    }
    return new Blob(chunks, { type: "application/x-ndjson" });
  }
}

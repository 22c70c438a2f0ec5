import { type SseMessage, SseParser } from "./sse";

describe("SseParser", () => {
  it("parses events split anywhere across chunks, with any line ending", () => {
    const stream = "retry: 2000\r\n: connected\r\n\r\n"
      + 'id: 7\nevent: vm.state_changed\ndata: {"vm_id":"a","state":"running"}\n\n'
      + ': keep-alive\r\rid: 8\revent: vm.deleted\rdata: {"vm_id":"a",\rdata: "name":"x"}\r\r';
    const expected: SseMessage[] = [
      { id: "7", event: "vm.state_changed", data: '{"vm_id":"a","state":"running"}' },
      { id: "8", event: "vm.deleted", data: '{"vm_id":"a",\n"name":"x"}' },
    ];
    for (let cut = 0; cut <= stream.length; cut++) {
      const got: SseMessage[] = [];
      const parser = new SseParser((m) => got.push(m));
      parser.feed(stream.slice(0, cut));
      parser.feed(stream.slice(cut));
      expect({ cut, got, retry: parser.retryMs }).toEqual({ cut, got: expected, retry: 2000 });
    }
  });
});

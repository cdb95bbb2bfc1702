// The parts of the WHATWG Encoding API the SDK uses: present in Node.js and in
// StarlingMonkey (ComponentizeJS), declared here so the build needs no DOM or
// Node.js type package.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}

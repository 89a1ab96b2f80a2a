// The slice of the WebAssembly JS API the wasm kernels use. tsconfig's lib is ES2022 without DOM (the library runs in
// Node and in browsers), and @types/node 20 does not declare WebAssembly, so these few members are declared here.
declare global {
  namespace WebAssembly {
    class Module {
      constructor(bytes: BufferSource);
    }
    class Instance {
      constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
      readonly exports: Record<string, unknown>;
    }
    interface MemoryDescriptor {
      initial: number;
      maximum?: number;
      shared?: boolean;
    }
    class Memory {
      constructor(descriptor: MemoryDescriptor);
      readonly buffer: ArrayBuffer | SharedArrayBuffer;
      grow(delta: number): number;
    }
    function validate(bytes: BufferSource): boolean;
  }
}

export {};

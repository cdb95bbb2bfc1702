;; Counter: a WebAssembly component that counts its own runs in storage.
;;
;; It imports two functions of airssys:wasm/storage@0.1.0 and exports
;;     run: func() -> result<u64, string>
;; which reads key "count" (an 8-byte little-endian u64; missing = 0), stores
;; count + 1 and returns it. A storage error comes back as err with the name
;; of the storage-error case (or internal-error's message); it never traps.
;;
;; Build: wasm-tools parse counter.wat -o counter.wasm
(component
  (import "airssys:wasm/storage@0.1.0" (instance $storage
    (type $e (variant
      (case "permission-denied") (case "quota-exceeded") (case "key-not-found")
      (case "invalid-key") (case "value-too-large") (case "internal-error" string)))
    (export "storage-error" (type $se (eq $e)))
    (export "storage-get" (func (param "key" string) (result (result (option (list u8)) (error $se)))))
    (export "storage-set" (func (param "key" string) (param "value" (list u8)) (result (result (error $se)))))
  ))

  ;; Memory and a bump allocator, in their own module so that `canon lower`
  ;; can use them before the main module exists.
  (core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (i32.const -1)
                          (memory.grow (i32.add (i32.const 1) (i32.shr_u (i32.sub (global.get $heap)
                                                  (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)))))
                (then unreachable))))
      (local.get $p))
  )
  (core instance $libc (instantiate $libc))

  (alias export $storage "storage-get" (func $storage-get))
  (alias export $storage "storage-set" (func $storage-set))
  (core func $get (canon lower (func $storage-get) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $set (canon lower (func $storage-set) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "storage" "get" (func $get (param i32 i32 i32)))
    (import "storage" "set" (func $set (param i32 i32 i32 i32 i32)))
    ;; Layout: 8 import results (tag @8, payload @12..24), 32 our result
    ;; (tag @32, payload @40), 64 the count's bytes, 128 the key, 256 the
    ;; error case names (20-byte slots), 384 their lengths, 400 a message.
    (data (i32.const 128) "count")
    (data (i32.const 256) "permission-denied")
    (data (i32.const 276) "quota-exceeded")
    (data (i32.const 296) "key-not-found")
    (data (i32.const 316) "invalid-key")
    (data (i32.const 336) "value-too-large")
    (data (i32.const 384) "\11\0e\0d\0b\0f")
    (data (i32.const 400) "the stored count is not 8 bytes")

    (func $err (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 32) (i32.const 1))
      (i32.store (i32.const 40) (local.get $ptr))
      (i32.store (i32.const 44) (local.get $len))
      (i32.const 32))
    ;; err(name of the storage-error case at 12), or internal-error's message.
    (func $storage-failed (result i32)
      (local $case i32)
      (local.set $case (i32.load8_u (i32.const 12)))
      (if (result i32) (i32.eq (local.get $case) (i32.const 5))
        (then (call $err (i32.load (i32.const 16)) (i32.load (i32.const 20))))
        (else (call $err (i32.add (i32.const 256) (i32.mul (local.get $case) (i32.const 20)))
                         (i32.load8_u (i32.add (i32.const 384) (local.get $case)))))))

    (func (export "run") (result i32)
      (local $count i64)
      (call $get (i32.const 128) (i32.const 5) (i32.const 8))
      (if (i32.load8_u (i32.const 8)) (then (return (call $storage-failed))))
      (if (i32.load8_u (i32.const 12))  ;; some(value)
        (then
          (if (i32.ne (i32.load (i32.const 20)) (i32.const 8))
            (then (return (call $err (i32.const 400) (i32.const 31)))))
          (local.set $count (i64.load (i32.load (i32.const 16))))))
      (local.set $count (i64.add (local.get $count) (i64.const 1)))
      (i64.store (i32.const 64) (local.get $count))
      (call $set (i32.const 128) (i32.const 5) (i32.const 64) (i32.const 8) (i32.const 8))
      (if (i32.load8_u (i32.const 8)) (then (return (call $storage-failed))))
      (i32.store8 (i32.const 32) (i32.const 0))
      (i64.store (i32.const 40) (local.get $count))
      (i32.const 32))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "storage" (instance (export "get" (func $get)) (export "set" (func $set))))))

  (func (export "run") (result (result u64 (error string)))
    (canon lift (core func $main "run") (memory (core memory $libc "memory"))))
)

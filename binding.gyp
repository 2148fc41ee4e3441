{
  "targets": [
    {
      "target_name": "vfio_user_native",
      "sources": [
        "native/addon.cc",
        "native/socket.cc",
        "native/poller.cc",
        "native/memory.cc",
        "native/eventfd.cc",
        "native/loop-watcher.cc"
      ],
      "include_dirs": [ "<!(node -p \"require('node-addon-api').include_dir\")" ],
      "defines": [ "NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "_GNU_SOURCE" ],
      "cflags_cc": [ "-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-O2" ],
      "cflags_cc!": [ "-fno-exceptions" ]
    }
  ]
}

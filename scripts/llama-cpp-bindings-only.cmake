# Included after every project() call of the llama-cpp-python build (CMAKE_PROJECT_INCLUDE).
# The Python bindings load libllama and libggml only; llama.cpp's "common" library (argument
# parsing, chat parsers, JSON schema: about half of the compile time) is for its own programs.
# llama-cpp-python forces LLAMA_BUILD_COMMON on in the cache; a normal variable in llama.cpp's
# own directory scope takes precedence over that cache entry.
if(PROJECT_NAME STREQUAL "llama.cpp")
    set(LLAMA_BUILD_COMMON OFF)
endif()

# embed.cmake: turns the dashboard's assets into a C source file of byte arrays (the ui_assets table of
# src/server/ui/ui.h). Run at build time by CMakeLists.txt (add_custom_command), so an edited asset rebuilds:
#
#   cmake -DASSET_DIR=<dir> -DASSETS="index.html;app.js" -DOUTPUT=<file.c> -P embed.cmake
#
# Pure CMake (file(READ ... HEX) and regular expressions): no xxd, nothing downloaded. Each array ends with
# a NUL that the recorded length leaves out, so an empty file still makes a valid array.
cmake_minimum_required(VERSION 3.20)

foreach(var ASSET_DIR ASSETS OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed.cmake: -D${var}=... is required")
  endif()
endforeach()

string(REPEAT "[0-9a-f]" 32 sixteen_bytes)
set(out "/* Generated from src/server/ui/assets by src/server/ui/embed.cmake; do not edit. */\n")
string(APPEND out "#include \"server/ui/ui.h\"\n\n")
set(table "")
set(index 0)
foreach(name IN LISTS ASSETS)
  file(READ "${ASSET_DIR}/${name}" hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR len "${hex_len} / 2")
  # 16 bytes a line, then each byte as 0xNN.
  string(REGEX REPLACE "(${sixteen_bytes})" "\\1\n    " hex "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND out "/* ${name}, ${len} bytes */\n")
  string(APPEND out "static const unsigned char asset_${index}[] = {\n    ${hex}0x00};\n\n")
  string(APPEND table "    {\"${name}\", asset_${index}, ${len}},\n")
  math(EXPR index "${index} + 1")
endforeach()
string(APPEND out "const ui_asset_t ui_assets[] = {\n${table}};\n")
string(APPEND out "const size_t ui_asset_count = sizeof ui_assets / sizeof ui_assets[0];\n")

file(WRITE "${OUTPUT}" "${out}")

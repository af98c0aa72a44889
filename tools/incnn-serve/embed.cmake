# Writes OUT, a header holding file IN as `kPageHtml`.
file(READ ${IN} content)
file(WRITE ${OUT} "// Generated from web/index.html by embed.cmake.\n#pragma once\nstatic const char kPageHtml[] = R\"incnnpage(${content})incnnpage\";\n")

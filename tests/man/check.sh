#!/bin/sh
# SPDX-License-Identifier: MIT
# man_pages: the man pages under docs/man/ against include/bluelet.h and
# src/libbluelet.map.
#   tests/man/check.sh GROFF HEADER MAP PAGES_DIR [BUILT_MAN_DIR]
# Fails when
#   - a function the header declares (BL_API) is in the NAME section of no
#     section-3 page, or of two; or a NAME section names anything else;
#   - a SYNOPSIS statement (prototype, typedef, enum; and a #define's value
#     where the page gives one) is not one of the header's, compared after
#     normalising white space; or a page's NAME and SYNOPSIS functions
#     differ; or the SYNOPSIS lacks #include <bluelet.h>;
#   - groff warns about a page (groff -man -ww -z -Tutf8), a page is not
#     plain ASCII, or lacks one of the sections every section-3 page has;
#     or man-db's lexgrog, where installed, cannot parse its NAME section;
#   - a page mentions a bl_ or BL_ name the header does not declare, calls
#     something bl_x() that is no function of the header, or refers to a
#     page bl_x(3) that neither a page nor an alias provides;
#   - an errno value (E...) in the header's comment on a function is
#     nowhere in that function's page;
#   - the VERSIONS section gives a function another symbol version node
#     than src/libbluelet.map (a node names the functions after it; a
#     section naming one node and no function means all the page's);
#   - the overview bluelet.7 does not mention every function;
#   - the .TH line is not ".TH <file name> <section> <date> "libbluelet
#     <BL_VERSION_STRING>" ...";
#   - BUILT_MAN_DIR (the build tree's docs/man) lacks an alias page
#     ".so manN/<page>.N" for a NAME entry other than the page's own name,
#     or holds one too many, or an alias does not render there.
# Every failure is listed; the exit status is 1 if there was any.
set -u
groff=$1 header=$2 map=$3 pages=$4 built=${5:-}
LC_ALL=C.UTF-8
export LC_ALL
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bl-man.XXXXXX") || exit 1
# BL_MAN_KEEP=1 keeps the work files (the parsed header and pages).
if [ -n "${BL_MAN_KEEP:-}" ]; then echo "work files: $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
nfail=0
fail() { echo "FAIL: $*"; nfail=$((nfail + 1)); }

# The header: statements (functions with their names, the rest), #defines,
# every bl_/BL_ identifier of the code, and the E... words of the comment
# before each function.
# norm(s): one space between two identifier characters where there was
# white space, none elsewhere; shared by the header's and the pages' awk.
norm_awk='
function norm(s,    i, c, o, sp, last) {
    o = ""; sp = 0; last = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c ~ /[ \t\n\r]/) { sp = 1; continue }
        if (sp && last ~ /[A-Za-z0-9_]/ && c ~ /[A-Za-z0-9_]/) o = o " "
        o = o c; last = c; sp = 0
    }
    return o
}
'
awk -v out="$tmp" "$norm_awk"'
function idents(s,    t) {
    while (match(s, /[A-Za-z_][A-Za-z0-9_]*/)) {
        t = substr(s, RSTART, RLENGTH)
        if (t ~ /^(bl|BL)_/) print t > (out "/hdr.idents")
        s = substr(s, RSTART + RLENGTH)
    }
}
function emit(s,    n, t, c) {
    idents(s)
    if (s ~ /(^|[^A-Za-z0-9_])BL_API([^A-Za-z0-9_]|$)/) {
        gsub(/(^|[ \t\n])BL_EXTENSION[ \t\n]/, " ", s)
        gsub(/(^|[ \t\n])BL_API[ \t\n]/, " ", s)
        n = norm(s)
        t = substr(n, 1, index(n, "(") - 1)
        sub(/.*[^A-Za-z0-9_]/, "", t)
        sub(/.* /, "", t)
        print "fn\t" t "\t" n > (out "/hdr.stmts")
        c = cbuf
        while (match(c, /E[A-Z0-9][A-Z0-9]+/)) {
            if ((RSTART == 1 || substr(c, RSTART - 1, 1) !~ /[A-Za-z0-9_]/) &&
                substr(c, RSTART + RLENGTH, 1) !~ /[A-Za-z0-9_]/)
                print t "\t" substr(c, RSTART, RLENGTH) > (out "/hdr.errnos")
            c = substr(c, RSTART + RLENGTH)
        }
    } else if (norm(s) != "") {
        print "other\t-\t" norm(s) > (out "/hdr.stmts")
    }
}
{ src = src $0 "\n" }
END {
    n = length(src); i = 1; bol = 1; depth = 0; stmt = ""; cbuf = ""
    lastcode = 1; skip = 0
    while (i <= n) {
        c = substr(src, i, 1)
        if (bol && c ~ /[ \t]/) { i++; continue }
        if (bol && c == "#") {
            # A preprocessor line, with its continuations.
            line = ""
            while (i <= n) {
                c = substr(src, i, 1)
                if (c == "\n" && substr(line, length(line), 1) != "\\") break
                line = line c; i++
            }
            gsub(/\\\n/, " ", line)
            gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, " ", line)
            lastcode = 1    # the next comment is about something else
            if (line ~ /^#[ \t]*ifdef[ \t]+__cplusplus/) skip = 1
            else if (skip && line ~ /^#[ \t]*endif/) skip = 0
            else if (!skip) {
                idents(line)
                if (match(line, /^#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
                    d = substr(line, RSTART, RLENGTH); v = substr(line, RLENGTH + 1)
                    sub(/^#[ \t]*define[ \t]+/, "", d)
                    print d "\t" norm(v) > (out "/hdr.defines")
                }
            }
            continue
        }
        bol = 0
        if (c == "\n") { bol = 1; if (!skip) stmt = stmt c; i++; continue }
        if (substr(src, i, 2) == "/*") {
            j = index(substr(src, i + 2), "*/")
            if (j == 0) j = n
            if (lastcode) { cbuf = ""; lastcode = 0 }
            cbuf = cbuf " " substr(src, i + 2, j - 1)
            i += j + 3
            stmt = stmt " "
            continue
        }
        i++
        if (skip) continue
        if (c !~ /[ \t\r]/) lastcode = 1
        if (c == "{") depth++
        if (c == "}") depth--
        if (c == ";" && depth == 0) { emit(stmt); stmt = ""; continue }
        stmt = stmt c
    }
}' "$header" || { echo "FAIL: cannot read $header"; exit 1; }
for f in hdr.idents hdr.stmts hdr.defines hdr.errnos; do touch "$tmp/$f"; done
grep '^fn	' "$tmp/hdr.stmts" | cut -f2 | sort >"$tmp/hdr.fns"
if [ ! -s "$tmp/hdr.fns" ]; then
    echo "FAIL: no BL_API function found in $header"
    exit 1
fi
sort -u "$tmp/hdr.idents" -o "$tmp/hdr.idents"
version=$(sed -n 's/^#define BL_VERSION_STRING "\(.*\)"$/\1/p' "$header")

# The map: function, node.
awk '
/^[ \t]*BLUELET_[0-9.]+[ \t]*\{/ { node = $1; sub(/\{.*/, "", node); next }
/^[ \t]*}/ { node = ""; next }
node != "" && /^[ \t]*bl_[A-Za-z0-9_]*;/ { s = $1; sub(/;.*/, "", s); print s "\t" node }
' "$map" | sort >"$tmp/map"
grep -o 'BLUELET_[0-9][0-9.]*' "$map" | sort -u >"$tmp/map.nodes"

# The pages and the names they give (NAME sections, parsed from the source).
: >"$tmp/names"        # name  section  page-file
: >"$tmp/refs"         # every manual page that man can find: name.section
found=0
for p in "$pages"/*.[1-9]; do
    [ -e "$p" ] || continue
    found=1
    base=${p##*/}
    sec=${base##*.}
    name=${base%.*}
    echo "$name.$sec" >>"$tmp/refs"
    awk -v sec="$sec" -v base="$base" -v tmp="$tmp" '
    /^\.SH/ { if (inname) exit; if ($0 ~ /^\.SH +"?NAME"? *$/) inname = 1; next }
    inname { if ($0 ~ /^[.\047]/) bad = 1; text = text " " $0 }
    END {
        if (!inname) { print "FAIL: " base ": no NAME section"; exit }
        if (bad) print "FAIL: " base ": a request in the NAME section (write plain text: names \\- description)"
        d = index(text, "\\-")
        if (d == 0) { print "FAIL: " base ": NAME has no \"\\-\" between names and description"; exit }
        s = substr(text, 1, d - 1)
        gsub(/[ \t]/, "", s)
        k = split(s, a, ",")
        for (j = 1; j <= k; j++) {
            if (a[j] == "") print "FAIL: " base ": an empty name in NAME"
            else print a[j] "\t" sec "\t" base >> (tmp "/names")
        }
    }' "$p" >>"$tmp/namefails"
done
[ "$found" = 1 ] || { echo "FAIL: no man pages in $pages"; exit 1; }
touch "$tmp/namefails"
while IFS= read -r line; do fail "${line#FAIL: }"; done <"$tmp/namefails"
cut -f1,2 "$tmp/names" | tr '\t' . >>"$tmp/refs"
sort -u "$tmp/refs" -o "$tmp/refs"

# Every header function on exactly one section-3 page, and nothing else.
awk -F'\t' '$2 == 3' "$tmp/names" | sort >"$tmp/names3"
while IFS= read -r f; do
    n=$(awk -F'\t' -v f="$f" '$1 == f' "$tmp/names3" | wc -l)
    if [ "$n" -eq 0 ]; then
        fail "$f (include/bluelet.h) is in the NAME section of no page"
    elif [ "$n" -gt 1 ]; then
        fail "$f is in the NAME section of $n pages: $(awk -F'\t' -v f="$f" '$1 == f { printf "%s ", $3 }' "$tmp/names3")"
    fi
done <"$tmp/hdr.fns"
while IFS='	' read -r n s f; do
    grep -qx "$n" "$tmp/hdr.fns" ||
        fail "$f: NAME gives $n, which include/bluelet.h does not declare"
done <"$tmp/names3"

# Each page.
lexgrog=$(command -v lexgrog 2>/dev/null || true)
for p in "$pages"/*.[1-9]; do
    base=${p##*/}
    sec=${base##*.}
    name=${base%.*}
    if LC_ALL=C grep -n "$(printf '[\200-\377]')" "$p" >"$tmp/nonascii"; then
        fail "$base: not ASCII (use groff escapes such as \\(em):"
        sed 's/^/    /' "$tmp/nonascii" | head -5
    fi

    # .TH name section date "libbluelet VERSION" "libbluelet Manual"
    th=$(grep -m1 '^\.TH ' "$p")
    case $th in
        ".TH $name $sec "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]" \"libbluelet $version\" "*) ;;
        *) fail "$base: .TH line is not '.TH $name $sec YYYY-MM-DD \"libbluelet $version\" ...': $th" ;;
    esac

    # whatis and apropos read the NAME section with man-db's lexgrog.
    if [ -n "$lexgrog" ] && ! "$lexgrog" "$p" >/dev/null 2>&1; then
        fail "$base: man-db's lexgrog cannot parse its NAME section: $("$lexgrog" "$p" 2>&1)"
    fi

    # Rendering: any warning fails.
    (cd "$pages" && "$groff" -man -ww -z -Tutf8 "$base") >"$tmp/warn" 2>&1 ||
        echo "(groff exit status $?)" >>"$tmp/warn"
    if [ -s "$tmp/warn" ]; then
        fail "$base: groff -man -ww -z -Tutf8 complains:"
        sed 's/^/    /' "$tmp/warn"
    fi

    # The rest reads the page as rendered, without hyphenation, in ASCII.
    (cd "$pages" && "$groff" -man -Tascii -rHY=0 -rLL=200n \
        -P-c -P-b -P-u -P-o "$base") >"$tmp/txt" 2>/dev/null

    # Names: declared, functions called as such, pages referred to.
    awk -v base="$base" -v tmp="$tmp" '
    BEGIN {
        while ((getline l < (tmp "/hdr.idents")) > 0) id[l] = 1
        while ((getline l < (tmp "/hdr.fns")) > 0) fn[l] = 1
        while ((getline l < (tmp "/refs")) > 0) ref[l] = 1
        while ((getline l < (tmp "/map.nodes")) > 0) node[l] = 1
    }
    {
        s = $0
        while (match(s, /[A-Za-z_][A-Za-z0-9_.]*/)) {
            t = substr(s, RSTART, RLENGTH); rest = substr(s, RSTART + RLENGTH)
            s = rest
            sub(/\.+$/, "", t)
            if (t ~ /^BLUELET_[0-9]/) {
                if (!(t in node) && !seen[t]++)
                    print "FAIL: " base ": symbol version " t " is no node of src/libbluelet.map"
                continue
            }
            sub(/\..*/, "", t)
            if (t !~ /^(bl|BL)_/ && t != "bluelet" && t != "libbluelet") continue
            if (match(rest, /^\([1-9][a-z]*\)/) &&
                (t !~ /^bl_/ || substr(rest, 2, 1) == "3")) {
                r = t "." substr(rest, 2, RLENGTH - 2)
                if (!(r in ref) && !seen[r]++)
                    print "FAIL: " base ": refers to " t substr(rest, 1, RLENGTH) ", which no page or alias provides"
                continue
            }
            if (t !~ /^(bl|BL)_/) continue
            if (!(t in id)) {
                if (!seen[t]++)
                    print "FAIL: " base ": mentions " t ", which include/bluelet.h does not declare"
            } else if (rest ~ /^\(/ && t ~ /^bl_/ && !(t in fn) && !seen["()" t]++) {
                print "FAIL: " base ": calls " t "(), which is no function of include/bluelet.h"
            }
        }
    }' "$tmp/txt" >"$tmp/idfails"
    while IFS= read -r line; do fail "${line#FAIL: }"; done <"$tmp/idfails"

    if [ "$base" = bluelet.7 ]; then
        # The overview lists every function under its group.
        grep -oE 'bl_[A-Za-z0-9_]+' "$tmp/txt" | sort -u >"$tmp/words7"
        while IFS= read -r f; do
            grep -qx "$f" "$tmp/words7" ||
                fail "$base: the overview does not list $f"
        done <"$tmp/hdr.fns"
    fi
    [ "$sec" = 3 ] || continue
    awk -F'\t' -v b="$base" '$3 == b { print $1 }' "$tmp/names3" | sort >"$tmp/pfns"

    for s in NAME LIBRARY SYNOPSIS DESCRIPTION "RETURN VALUE" ERRORS VERSIONS "SEE ALSO"; do
        grep -qx "$s" "$tmp/txt" || fail "$base: no $s section"
    done

    # SYNOPSIS: every statement one of the header's, the functions those of
    # NAME.
    awk -v base="$base" -v tmp="$tmp" "$norm_awk"'
    function squeeze(s) { gsub(/[ \t\n]+/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
    BEGIN {
        FS = "\t"
        while ((getline l < (tmp "/hdr.stmts")) > 0) {
            split(l, a, "\t"); stmt[a[3]] = 1
            if (a[1] == "fn") proto[a[2]] = a[3]
        }
        while ((getline l < (tmp "/hdr.defines")) > 0) {
            split(l, a, "\t"); def[a[1]] = a[2]
        }
        while ((getline l < (tmp "/pfns")) > 0) want[l] = 1
    }
    /^SYNOPSIS$/ { on = 1; next }
    on && /^[A-Z]/ { on = 0 }
    !on { next }
    {
        l = $0; sub(/^[ \t]+/, "", l)
        if (l ~ /^#/) {
            gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, " ", l)
            l = squeeze(l)
            if (l == "#include <bluelet.h>") { inc = 1; next }
            if (match(l, /^# *define +[A-Za-z_][A-Za-z0-9_]*/)) {
                d = substr(l, RSTART, RLENGTH); v = substr(l, RLENGTH + 1)
                sub(/^# *define +/, "", d)
                if (!(d in def))
                    print "FAIL: " base ": SYNOPSIS defines " d ", which include/bluelet.h does not"
                else if (norm(v) != "" && norm(v) != def[d])
                    print "FAIL: " base ": SYNOPSIS: #define " d " " squeeze(v) " differs from the header (" def[d] ")"
                next
            }
            print "FAIL: " base ": SYNOPSIS: unexpected line: " l
            next
        }
        text = text "\n" $0
    }
    END {
        if (!inc) print "FAIL: " base ": SYNOPSIS lacks #include <bluelet.h>"
        gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, " ", text)
        depth = 0; cur = ""
        for (i = 1; i <= length(text); i++) {
            c = substr(text, i, 1)
            if (c == "{") depth++
            if (c == "}") depth--
            if (c == ";" && depth == 0) { st[++ns] = cur; cur = ""; continue }
            cur = cur c
        }
        if (squeeze(cur) != "")
            print "FAIL: " base ": SYNOPSIS: text after the last statement: " squeeze(cur)
        for (k = 1; k <= ns; k++) {
            n = norm(st[k]); o = squeeze(st[k])
            f = ""
            if (n !~ /^typedef[^A-Za-z0-9_]/ && index(n, "(") &&
                (!index(n, "{") || index(n, "{") > index(n, "("))) {
                f = substr(n, 1, index(n, "(") - 1)
                sub(/.*[^A-Za-z0-9_]/, "", f); sub(/.* /, "", f)
                if (got[f]++)
                    print "FAIL: " base ": SYNOPSIS: " f " twice"
                if (!(f in want))
                    print "FAIL: " base ": SYNOPSIS declares " f ", which is not in its NAME section"
            }
            if (!(n in stmt)) {
                if (f != "" && (f in proto))
                    print "FAIL: " base ": SYNOPSIS prototype differs from include/bluelet.h:\n    page:   " o ";\n    header: " proto[f] ";"
                else
                    print "FAIL: " base ": SYNOPSIS: not a declaration of include/bluelet.h: " o ";"
            }
        }
        for (f in want)
            if (!(f in got))
                print "FAIL: " base ": " f " is in NAME but has no prototype in SYNOPSIS"
    }' "$tmp/txt" >"$tmp/synfails"
    while IFS= read -r line; do
        case $line in
            FAIL:*) fail "${line#FAIL: }" ;;
            *) echo "$line" ;;
        esac
    done <"$tmp/synfails"

    # The errno values of the header's comment on each function.
    grep -oE '[A-Za-z0-9_]+' "$tmp/txt" | sort -u >"$tmp/words"
    while IFS= read -r f; do
        awk -F'\t' -v f="$f" '$1 == f { print $2 }' "$tmp/hdr.errnos" | sort -u |
        while IFS= read -r e; do
            grep -qx "$e" "$tmp/words" ||
                echo "$base: the header lists $e for $f, the page does not mention it"
        done
    done <"$tmp/pfns" >"$tmp/errfails"
    while IFS= read -r line; do fail "$line"; done <"$tmp/errfails"

    # VERSIONS against the map.
    sed -n '/^VERSIONS$/,/^[A-Z]/p' "$tmp/txt" | sed '1d;$d' |
        grep -oE 'BLUELET_[0-9]+\.[0-9]+|bl_[A-Za-z0-9_]+' >"$tmp/vtok"
    awk -v base="$base" -v tmp="$tmp" '
    BEGIN {
        while ((getline l < (tmp "/map")) > 0) { split(l, a, "\t"); m[a[1]] = a[2] }
        while ((getline l < (tmp "/pfns")) > 0) want[l] = 1
    }
    /^BLUELET_/ { cur = $0; if (!(cur in nodes)) { nodes[cur] = 1; nn++ }; next }
    ($0 in want) {
        if (cur == "") { print "FAIL: " base ": VERSIONS names " $0 " before any node"; next }
        if (($0 in v) && v[$0] != cur) print "FAIL: " base ": VERSIONS gives " $0 " two nodes"
        v[$0] = cur
    }
    END {
        for (f in want) {
            if (!(f in v)) {
                if (nn == 1) v[f] = cur
                else { print "FAIL: " base ": VERSIONS gives no node for " f; continue }
            }
            if (!(f in m)) print "FAIL: " base ": " f " is in no node of src/libbluelet.map"
            else if (m[f] != v[f]) print "FAIL: " base ": VERSIONS gives " f " " v[f] ", src/libbluelet.map " m[f]
        }
    }' "$tmp/vtok" >"$tmp/verfails"
    while IFS= read -r line; do fail "${line#FAIL: }"; done <"$tmp/verfails"
done

# The aliases the build generated (docs/man/CMakeLists.txt).
if [ -n "$built" ]; then
    : >"$tmp/expect"
    while IFS='	' read -r n s f; do
        [ "$n.$s" = "$f" ] && continue
        echo "man$s/$n.$s" >>"$tmp/expect"
        a=$built/man$s/$n.$s
        if [ ! -f "$a" ]; then
            fail "no alias page $a for $n (in NAME of $f): rebuild (cmake --build) or see docs/man/CMakeLists.txt"
        elif [ "$(cat "$a")" != ".so man$s/$f" ]; then
            fail "alias page $a does not hold '.so man$s/$f': $(head -c 200 "$a")"
        else
            (cd "$built" && "$groff" -man -ww -z -Tutf8 "man$s/$n.$s") >"$tmp/warn" 2>&1 ||
                echo "(groff exit status $?)" >>"$tmp/warn"
            if [ -s "$tmp/warn" ]; then
                fail "alias page man$s/$n.$s does not render in $built:"
                sed 's/^/    /' "$tmp/warn"
            fi
        fi
    done <"$tmp/names"
    for a in "$built"/man[1-9]/*; do
        [ -e "$a" ] || continue
        rel=${a#"$built"/}
        if grep -qx "$rel" "$tmp/expect"; then
            continue
        elif [ -f "$pages/${a##*/}" ]; then
            cmp -s "$a" "$pages/${a##*/}" ||
                fail "$a differs from $pages/${a##*/}: rebuild (cmake --build)"
        else
            fail "$a is neither a page nor an alias of a NAME entry: rebuild (cmake --build)"
        fi
    done
fi

if [ "$nfail" -gt 0 ]; then
    echo "$nfail problem(s) in the man pages"
    exit 1
fi
echo "ok: $(ls "$pages"/*.[1-9] | wc -l) pages, $(wc -l <"$tmp/hdr.fns") functions of include/bluelet.h, each on one page; prototypes, errno values and symbol versions agree"

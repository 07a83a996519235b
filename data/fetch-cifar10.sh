#!/usr/bin/env bash
# fetch-cifar10.sh: fill a folder with the binary version of CIFAR-10 (cifar-10-batches-bin).
#
# With --from DIR, copy a local mirror after checking every file against its SHA256SUMS.
# Without it, download the official tarball, check its md5, extract it and write a
# SHA256SUMS for the extracted files, so that a later run can tell the folder is whole.
# Either way the files land in DEST.tmp.<pid> first and are moved into place at the end,
# so an interrupted run leaves no half-filled DEST.
set -euo pipefail

prog=$(basename "$0")
script_dir=$(cd "$(dirname "$0")" && pwd)

url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
tarball_md5="c32a1d4ab5d03f1284b67883e8d87530"
tarball="$script_dir/cifar-10-binary.tar.gz"
required_files=(
    data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin
    test_batch.bin batches.meta.txt
)

usage() {
    cat <<USAGE
usage: $prog [--from DIR] [DEST]

Fill DEST (default: $script_dir/cifar-10-batches-bin) with CIFAR-10, binary version.

  --from DIR   copy from a local mirror holding SHA256SUMS, the .bin files and
               batches.meta.txt; every file listed in SHA256SUMS is checked first
  -h, --help   print this help

Without --from, download $url
(curl, or wget if curl is missing), check its md5, and extract it.
If DEST already holds a SHA256SUMS that verifies, nothing is done.
USAGE
}

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$prog: $*" >&2
    echo "try '$prog --help'" >&2
    exit 2
}

# Checks the files of folder $1 against its SHA256SUMS. On failure prints the failing
# lines of sha256sum to stderr, each naming a file, and returns 1.
verify_folder() {
    local dir=$1
    local report
    if report=$(cd "$dir" && sha256sum --strict -c SHA256SUMS 2>&1); then
        return 0
    fi
    echo "$prog: checksum check failed in $dir:" >&2
    grep -v ': OK$' <<<"$report" | sed 's/^/  /' >&2
    return 1
}

# Prints the file names listed in SHA256SUMS of folder $1, one a line.
listed_files() {
    sed -E -n 's/^[0-9a-fA-F]{64} [ *]//p' "$1/SHA256SUMS"
}

staging=""
cleanup() {
    if [[ -n "$staging" && -e "$staging" ]]; then
        rm -rf -- "$staging"
    fi
}
trap cleanup EXIT

# 1. Arguments.
from=""
dest=""
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --from)
            [[ $# -ge 2 ]] || usage_error "--from needs a folder"
            from=$2
            shift 2
            ;;
        --from=*)
            from=${1#--from=}
            shift
            ;;
        --)
            shift
            break
            ;;
        -*)
            usage_error "unknown option: $1"
            ;;
        *)
            [[ -z "$dest" ]] || usage_error "more than one DEST given: $dest, $1"
            dest=$1
            shift
            ;;
    esac
done
if [[ $# -gt 0 ]]; then
    [[ -z "$dest" && $# -eq 1 ]] || usage_error "more than one DEST given"
    dest=$1
fi
dest=${dest:-$script_dir/cifar-10-batches-bin}
dest=${dest%/}

# A mirror that is not there is an error even when DEST is already complete: the command
# asked for that mirror, and a mistyped path should not pass unnoticed.
if [[ -n "$from" && ! -d "$from" ]]; then
    die "mirror folder $from not found"
fi

# 2. An existing DEST: done if it verifies, refused otherwise (it is not ours to delete),
# unless it is an empty folder.
if [[ -e "$dest" ]]; then
    if [[ -f "$dest/SHA256SUMS" ]]; then
        if verify_folder "$dest"; then
            echo "$dest already holds CIFAR-10 and its SHA256SUMS verifies; nothing to do"
            exit 0
        fi
        die "$dest exists but fails its SHA256SUMS (files above); remove it and re-run"
    fi
    if [[ -d "$dest" && -z "$(ls -A -- "$dest")" ]]; then
        rmdir -- "$dest"
    else
        die "$dest exists and has no SHA256SUMS; remove it and re-run"
    fi
fi

mkdir -p "$(dirname "$dest")"
staging="$dest.tmp.$$"
rm -rf -- "$staging"
mkdir "$staging"

if [[ -n "$from" ]]; then
    # 3a. Local mirror: verify in place, copy, verify the copy, move into place.
    [[ -f "$from/SHA256SUMS" ]] || die "mirror folder $from has no SHA256SUMS"

    mapfile -t files < <(listed_files "$from")
    for name in "${required_files[@]}"; do
        grep -qxF -- "$name" <<<"$(printf '%s\n' "${files[@]}")" ||
            die "$from/SHA256SUMS does not list $name"
    done
    for name in "${files[@]}"; do
        [[ "$name" != */* ]] || die "$from/SHA256SUMS lists a path, not a file name: $name"
    done

    echo "checking ${#files[@]} files in $from against SHA256SUMS"
    verify_folder "$from" || die "mirror $from is corrupt (files above); nothing copied"

    for name in "${files[@]}" SHA256SUMS; do
        cp -- "$from/$name" "$staging/$name"
    done
    if [[ -f "$from/README.md" ]]; then
        cp -- "$from/README.md" "$staging/README.md"
    fi
    # A read-only mirror gives read-only copies, which rm would then ask about one by one.
    chmod -R u+w -- "$staging"
    verify_folder "$staging" || die "copy into $staging does not verify; disk trouble?"

    mv -- "$staging" "$dest"
    staging=""
    echo "copied CIFAR-10 from $from into $dest"
    exit 0
fi

# 3b. Download: fetch the tarball unless a good one is already there, check its md5.
if [[ -f "$tarball" ]] && md5sum -c --status <<<"$tarball_md5  $tarball"; then
    echo "using $tarball, already downloaded, md5 matches"
else
    partial="$tarball.tmp"
    rm -f -- "$partial"
    echo "downloading $url"
    if command -v curl >/dev/null; then
        # --speed-limit/--speed-time: give up on a transfer stalled below 1 kB/s for 60 s.
        curl --fail --location --connect-timeout 20 --speed-limit 1024 --speed-time 60 \
            --output "$partial" "$url" ||
            { status=$?; rm -f -- "$partial"; die "download of $url failed (curl exit $status)"; }
    elif command -v wget >/dev/null; then
        wget --timeout=20 --tries=2 --output-document="$partial" "$url" ||
            { status=$?; rm -f -- "$partial"; die "download of $url failed (wget exit $status)"; }
    else
        die "neither curl nor wget found; install one, or use --from DIR"
    fi
    mv -- "$partial" "$tarball"

    actual_md5=$(md5sum "$tarball" | cut -d' ' -f1)
    if [[ "$actual_md5" != "$tarball_md5" ]]; then
        rm -f -- "$tarball"
        die "md5 of $tarball is $actual_md5, expected $tarball_md5; deleted it"
    fi
fi

# 4. Extract next to DEST, check the inner folder, pin it with a SHA256SUMS, move it.
tar -xzf "$tarball" -C "$staging"
inner="$staging/cifar-10-batches-bin"
[[ -d "$inner" ]] || die "$tarball holds no cifar-10-batches-bin folder"
for name in "${required_files[@]}"; do
    [[ -f "$inner/$name" ]] || die "$tarball holds no cifar-10-batches-bin/$name"
done
(cd "$inner" && sha256sum -- "${required_files[@]}" >SHA256SUMS)

mv -- "$inner" "$dest"
echo "extracted CIFAR-10 into $dest (tarball kept at $tarball)"

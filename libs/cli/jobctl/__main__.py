from jobctl._app import main

main()

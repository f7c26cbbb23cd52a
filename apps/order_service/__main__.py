from order_service.main import main

main()
